#include "noise.h"

#include <gtest/gtest.h>

#include "crypto.h"
#include "handshake.h"
#include "wasentinel/testing/status_matchers.h"

using ::wasentinel::testing::IsOk;

namespace wasentinel::wa {
namespace {

constexpr int64_t kNow = 1'800'000'000;

TEST(Crypto, HkdfMatchesRfc5869TestCase3) {
  Bytes ikm(22, 0x0b);
  Bytes okm = Hkdf(ikm, {}, {}, 42);
  EXPECT_EQ(HexEncode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(Crypto, CurveSignatureVerifies) {
  for (int i = 0; i < 20; ++i) {
    KeyPair kp = KeyPair::Generate();
    Bytes msg = ToBytes("certificate details " + std::to_string(i));
    auto sig = CurveSign(kp.priv, msg);
    EXPECT_TRUE(CurveVerify(kp.pub, msg, sig));
    Bytes prefixed = {0x05};
    Append(prefixed, kp.pub);
    EXPECT_TRUE(CurveVerify(prefixed, msg, sig));
    msg[0] ^= 1;
    EXPECT_FALSE(CurveVerify(kp.pub, msg, sig));
    msg[0] ^= 1;
    sig[10] ^= 1;
    EXPECT_FALSE(CurveVerify(kp.pub, msg, sig));
    EXPECT_FALSE(CurveVerify(KeyPair::Generate().pub, msg, CurveSign(kp.priv, msg)));
  }
  EXPECT_FALSE(CurveVerify(Bytes(31), Bytes{}, Bytes(64)));
  EXPECT_FALSE(CurveVerify(Bytes(32), Bytes{}, Bytes(64)));
}

struct Pki {
  KeyPair root = KeyPair::Generate();
  KeyPair intermediate = KeyPair::Generate();
  KeyPair server = KeyPair::Generate();
  Bytes Chain(uint64_t nb = kNow - 10, uint64_t na = kNow + 10) const {
    return MakeCertChain(root, intermediate, server.pub, nb, na);
  }
};

TEST(Handshake, ClientAndServerAgree) {
  Pki pki;
  KeyPair noise_key = KeyPair::Generate();
  ClientHandshake client(noise_key);
  ServerHandshake server(pki.server, pki.Chain());
  auto m2 = server.Respond(client.Hello());
  ASSERT_THAT(m2, IsOk()) << m2.status();
  wire::ClientPayload payload;
  payload.set_username(15551234567);
  payload.set_device(12);
  payload.set_pull(true);
  auto m3 = client.Finish(*m2, payload, pki.root.pub, kNow);
  ASSERT_THAT(m3, IsOk()) << m3.status();
  auto id = server.Complete(*m3);
  ASSERT_THAT(id, IsOk()) << id.status();
  EXPECT_EQ(id->static_pub, noise_key.pub);
  EXPECT_EQ(id->payload.username(), 15551234567u);
  EXPECT_EQ(id->payload.device(), 12u);

  auto c = client.Split();
  auto s = server.Split();
  for (int i = 0; i < 3; ++i) {
    Bytes up = c.write.Encrypt(ToBytes("up"));
    EXPECT_EQ(s.read.Decrypt(up).value(), ToBytes("up"));
    Bytes down = s.write.Encrypt(ToBytes("down"));
    EXPECT_EQ(c.read.Decrypt(down).value(), ToBytes("down"));
  }
  // A tampered frame fails, and the next one still decrypts (the counter advanced).
  Bytes bad = s.write.Encrypt(ToBytes("x"));
  bad[0] ^= 1;
  EXPECT_EQ(c.read.Decrypt(bad).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(c.read.Decrypt(s.write.Encrypt(ToBytes("y"))), IsOk());
}

absl::Status ClientAgainst(const KeyPair& server_static, Bytes chain, ByteView root_pub,
                           int64_t now = kNow) {
  ClientHandshake client(KeyPair::Generate());
  ServerHandshake server(server_static, std::move(chain));
  auto m2 = server.Respond(client.Hello());
  if (!m2.ok()) return m2.status();
  return client.Finish(*m2, wire::ClientPayload(), root_pub, now).status();
}

TEST(Handshake, RefusesUntrustedChains) {
  Pki pki;
  EXPECT_THAT(ClientAgainst(pki.server, pki.Chain(), pki.root.pub), IsOk());
  // Another root.
  EXPECT_EQ(ClientAgainst(pki.server, pki.Chain(), KeyPair::Generate().pub).code(),
            absl::StatusCode::kUnauthenticated);
  // The real WhatsApp root does not trust a test chain.
  EXPECT_EQ(ClientAgainst(pki.server, pki.Chain(), kWhatsAppRootKey).code(),
            absl::StatusCode::kUnauthenticated);
  // A leaf naming another server key.
  EXPECT_EQ(ClientAgainst(KeyPair::Generate(), pki.Chain(), pki.root.pub).code(),
            absl::StatusCode::kUnauthenticated);
  // Expired and not yet valid.
  EXPECT_EQ(ClientAgainst(pki.server, pki.Chain(kNow - 100, kNow - 1), pki.root.pub).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ClientAgainst(pki.server, pki.Chain(kNow + 1, kNow + 100), pki.root.pub).code(),
            absl::StatusCode::kUnauthenticated);
  // Garbage instead of a chain.
  EXPECT_EQ(ClientAgainst(pki.server, ToBytes("garbage"), pki.root.pub).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(Handshake, RefusesMalformedMessages) {
  ClientHandshake client(KeyPair::Generate());
  client.Hello();
  EXPECT_EQ(client.Finish(ToBytes("\x12\x00"), {}, kWhatsAppRootKey, kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
  Pki pki;
  ServerHandshake server(pki.server, pki.Chain());
  EXPECT_EQ(server.Respond(ToBytes("junk")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Frames, SplitsAnyChunking) {
  Bytes stream;
  ASSERT_THAT(AppendFrame(stream, ToBytes("first")), IsOk());
  ASSERT_THAT(AppendFrame(stream, Bytes{}), IsOk());
  ASSERT_THAT(AppendFrame(stream, Bytes(70000, 7)), IsOk());
  for (size_t chunk : {1u, 2u, 3u, 7u, 1000u, 100000u}) {
    FrameReader reader;
    std::vector<Bytes> frames;
    for (size_t i = 0; i < stream.size(); i += chunk) {
      reader.Feed(ByteView(stream).subspan(i, std::min(chunk, stream.size() - i)));
      while (true) {
        auto f = reader.Next();
        ASSERT_THAT(f, IsOk());
        if (!f->has_value()) break;
        frames.push_back(**f);
      }
    }
    ASSERT_EQ(frames.size(), 3u) << chunk;
    EXPECT_EQ(frames[0], ToBytes("first"));
    EXPECT_TRUE(frames[1].empty());
    EXPECT_EQ(frames[2].size(), 70000u);
    EXPECT_EQ(reader.buffered(), 0u);
  }
}

TEST(Frames, RefusesOversizedFrames) {
  FrameReader reader(/*max_frame=*/1024);
  reader.Feed(Bytes{0x00, 0x04, 0x01});
  EXPECT_EQ(reader.Next().status().code(), absl::StatusCode::kResourceExhausted);
  Bytes out;
  EXPECT_THAT(AppendFrame(out, Bytes(kMaxFrameSize + 1)), ::testing::Not(IsOk()));
}

}  // namespace
}  // namespace wasentinel::wa
