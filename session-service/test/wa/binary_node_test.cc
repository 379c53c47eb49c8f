#include "binary_node.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include "node_json.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::wa {

void PrintTo(const Node& node, std::ostream* os) { *os << "\n" << NodeToXml(node); }

namespace {

Bytes Hex(std::string_view h) { return HexDecode(h).value(); }

// Vectors from Baileys 6.7.23 encodeBinaryNode.
struct Vector {
  Node node;
  std::string hex;
};

std::vector<Vector> BaileysVectors() {
  return {
      {MakeNode("iq",
                {{"id", "1.2-3"}, {"to", "@s.whatsapp.net"}, {"type", "get"}, {"xmlns", "w:p"}},
                std::vector<Node>{MakeNode("ping")}),
       "00 f8 0a 19 08 ff 83 1b 2a 3f 11 fa 00 03 04 29 16 57 f8 01 f8 01 56"},
      {MakeNode("presence", {{"type", "available"}, {"name", "Bob"}}), "00f8051f048889fc03426f62"},
      {MakeNode("ack", {{"id", "ABCDEF0123456789"},
                        {"to", "15550001111@s.whatsapp.net"},
                        {"class", "message"}}),
       "00 f8 07 1b 08 fb 08 ab cd ef 01 23 45 67 89 11 fa ff 86 15 55 00 01 11 1f 03 15 13"},
      {MakeNode("device", {{"jid", "15551234567:12@s.whatsapp.net"}, {"lid", "999:3@lid"}}),
       "00 f8 05 3b 0c f7 00 0c ff 86 15 55 12 34 56 7f 76 f7 01 03 ff 82 99 9f"},
      {MakeNode("ref", {}, ToBytes("2@abc")), "00 f8 02 ed 50 fc 05 32 40 61 62 63"},
  };
}

TEST(BinaryNode, EncodesLikeBaileys) {
  for (const auto& v : BaileysVectors()) {
    auto bytes = EncodeNode(v.node);
    ASSERT_THAT(bytes, IsOk()) << bytes.status();
    EXPECT_EQ(HexEncode(*bytes), HexEncode(Hex(v.hex))) << NodeToXml(v.node);
  }
}

TEST(BinaryNode, DecodesBaileysVectors) {
  for (const auto& v : BaileysVectors()) {
    auto node = DecodeNode(Hex(v.hex));
    ASSERT_THAT(node, IsOk()) << node.status();
    EXPECT_EQ(*node, v.node) << NodeToXml(*node);
  }
}

TEST(BinaryNode, RoundTripsEveryStringForm) {
  Node n = MakeNode(
      "message",
      {{"id", "3EB0A1B2C3D4E5F6"},             // hex
       {"t", "1700000000"},                    // nibble
       {"odd", "123"},                         // odd nibble
       {"from", "123456789-1600000000@g.us"},  // JID pair with a nibble user
       {"participant", "5511999999999:7@s.whatsapp.net"},
       {"lid", "12345:9@lid"},
       {"notify", "Ünïcödé name ✓"},
       {"empty", ""},
       {"agent", "1_2:3@s.whatsapp.net"}},
      std::vector<Node>{
          MakeNode("enc", {{"v", "2"}, {"type", "pkmsg"}}, Bytes(300, 0xab)),  // BINARY_20
          MakeNode("body", {}, std::string("1700000000")),  // string content (packed)
          MakeNode("raw", {}, ToBytes("hello")),      // raw string content reads back as bytes
          MakeNode("big", {}, Bytes(1 << 20, 0x01)),  // BINARY_32 (printed truncated)  // BINARY_32
          MakeNode("list", {}, std::vector<Node>(300, MakeNode("item"))),  // LIST_16
      });
  auto bytes = EncodeNode(n);
  ASSERT_THAT(bytes, IsOk()) << bytes.status();
  auto back = DecodeNode(*bytes);
  ASSERT_THAT(back, IsOk()) << back.status();
  EXPECT_EQ(*back, n);
}

TEST(BinaryNode, InflatesCompressedFrames) {
  Node n = MakeNode("iq", {{"id", "abc"}, {"type", "result"}});
  Bytes plain = EncodeNode(n).value();
  uLongf cap = compressBound(plain.size() - 1);
  Bytes frame(1 + cap);
  frame[0] = 0x02;
  ASSERT_EQ(compress(frame.data() + 1, &cap, plain.data() + 1, plain.size() - 1), Z_OK);
  frame.resize(1 + cap);
  auto back = DecodeNode(frame);
  ASSERT_THAT(back, IsOk()) << back.status();
  EXPECT_EQ(*back, n);
}

TEST(BinaryNode, RefusesHostileInput) {
  const std::vector<std::string> bad = {
      "",              // no flag byte
      "00",            // no node
      "00f8",          // list size missing
      "00f800",        // empty list
      "00f80100",      // empty tag
      "00f80219fcff",  // binary length past the end
      "00f80219f8ff",  // child count past the end
      "00f80119aa",    // trailing byte
      "00f80119 00",   // trailing byte
      "00f801ef",      // dictionary index missing
      "00f801f0",      // unknown string tag
      "00f80119ff",    // trailing packed tag
      "00f801ff81",    // odd packed string with no bytes: truncated
      "00f801ffc1cc",  // invalid nibble 12
      "00f801fa0000",  // JID pair without a server
      "02789c",        // truncated zlib
      "02deadbeef",    // not zlib
  };
  for (const auto& h : bad) {
    auto node = DecodeNode(Hex(h));
    EXPECT_THAT(node, ::testing::Not(IsOk())) << h << " decoded as " << NodeToXml(*node);
    if (!node.ok()) EXPECT_EQ(node.status().code(), absl::StatusCode::kInvalidArgument) << h;
  }
}

TEST(BinaryNode, BoundsNesting) {
  // 100 nested single-child lists: deeper than the default limit of 64.
  Node n = MakeNode("leaf");
  for (int i = 0; i < 100; ++i) n = MakeNode("n", {}, std::vector<Node>{n});
  auto bytes = EncodeNode(n).value();
  EXPECT_THAT(DecodeNode(bytes), ::testing::Not(IsOk()));
  EXPECT_THAT(DecodeNode(bytes, DecodeLimits{.max_depth = 200}), IsOk());
}

TEST(BinaryNode, EncodeRefusesEmptyTag) { EXPECT_THAT(EncodeNode(Node{}), ::testing::Not(IsOk())); }

TEST(BinaryNode, JsonRoundTrip) {
  Node n = MakeNode("iq", {{"id", "1"}, {"to", "@s.whatsapp.net"}},
                    std::vector<Node>{MakeNode("ref", {}, ToBytes("\x01\x02")),
                                      MakeNode("t", {}, std::string("text"))});
  auto j = NodeToJson(n);
  EXPECT_EQ(
      j.dump(),
      R"({"tag":"iq","attrs":{"id":"1","to":"@s.whatsapp.net"},"content":[{"tag":"ref","content":{"hex":"0102"}},{"tag":"t","content":"text"}]})");
  auto back = NodeFromJson(j);
  ASSERT_THAT(back, IsOk()) << back.status();
  EXPECT_EQ(*back, n);
  EXPECT_THAT(NodeFromJson(nlohmann::ordered_json::parse(R"({"tag":""})")), ::testing::Not(IsOk()));
  EXPECT_THAT(NodeFromJson(nlohmann::ordered_json::parse(R"({"tag":"a","attrs":{"x":1}})")),
              ::testing::Not(IsOk()));
  EXPECT_THAT(NodeFromJson(nlohmann::ordered_json::parse(R"({"tag":"a","content":{"hex":"zz"}})")),
              ::testing::Not(IsOk()));
}

TEST(Jid, Parses) {
  auto j = Jid::Parse("15551234567:12@s.whatsapp.net").value();
  EXPECT_EQ(j.user, "15551234567");
  EXPECT_EQ(j.device, 12);
  EXPECT_EQ(j.server, "s.whatsapp.net");
  EXPECT_EQ(j.ToString(), "15551234567:12@s.whatsapp.net");
  EXPECT_EQ(Jid::Parse("1@lid").value().device, -1);
  EXPECT_THAT(Jid::Parse("nojid"), ::testing::Not(IsOk()));
  EXPECT_THAT(Jid::Parse("1:x@s.whatsapp.net"), ::testing::Not(IsOk()));
}

}  // namespace
}  // namespace wasentinel::wa
