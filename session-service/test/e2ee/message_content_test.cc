// The Message protobuf of a decrypted plaintext (session-service/src/e2ee/message_content.h):
// text read, every other kind named and kept, envelopes and copies from our own devices
// unwrapped, a group's sender key found, and what is not a Message refused.
#include "e2ee/message_content.h"

#include <gtest/gtest.h>

#include <string>

namespace wasentinel::signal {
namespace {

// Protobuf wire format by hand, so the tests say exactly what bytes arrive.
std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
std::string Field(int number, const std::string& bytes) {
  return Varint(static_cast<uint64_t>(number) << 3 | 2) + Varint(bytes.size()) + bytes;
}
Bytes B(const std::string& s) { return Bytes(s.begin(), s.end()); }

TEST(MessageContent, ReadsTextAndExtendedText) {
  auto plain = ParseMessageContent(B(Field(1, "hello")));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->type, "conversation");
  EXPECT_EQ(plain->text, "hello");
  EXPECT_FALSE(plain->device_sent_to);
  auto extended = ParseMessageContent(B(Field(6, Field(1, "see https://example.com"))));
  ASSERT_TRUE(extended.ok());
  EXPECT_EQ(extended->type, "extendedTextMessage");
  EXPECT_EQ(extended->text, "see https://example.com");
  // What our own devices write reads back the same.
  auto written = ParseMessageContent(TextMessage("round trip"));
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(written->text, "round trip");
}

TEST(MessageContent, NamesEveryOtherKindAndKeepsItsBytes) {
  const std::string image =
      Field(3, Field(1, "https://mmg.whatsapp.net/x") + Field(2, "image/jpeg"));
  auto got = ParseMessageContent(B(image));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->type, "imageMessage");
  EXPECT_FALSE(got->text);
  EXPECT_EQ(got->raw, B(image));
  EXPECT_EQ(ParseMessageContent(B(Field(46, Field(2, "👍"))))->type, "reactionMessage");
  EXPECT_EQ(ParseMessageContent(B(Field(49, Field(2, "Lunch?"))))->type, "pollCreationMessage");
  EXPECT_EQ(ParseMessageContent(B(Field(58, Field(1, Field(1, "edited")))))->type, "editedMessage");
  // A kind this build has no name for still has its number.
  EXPECT_EQ(ParseMessageContent(B(Field(140, "x")))->type, "field:140");
  // messageContextInfo beside the content is not the content.
  EXPECT_EQ(ParseMessageContent(B(Field(35, Field(3, "secret")) + Field(1, "hi")))->type,
            "conversation");
}

TEST(MessageContent, UnwrapsEnvelopesAndOwnDeviceCopies) {
  // Ephemeral (disappearing) and view-once envelopes hold the real message.
  auto ephemeral = ParseMessageContent(B(Field(40, Field(1, Field(1, "gone soon")))));
  ASSERT_TRUE(ephemeral.ok());
  EXPECT_EQ(ephemeral->type, "conversation");
  EXPECT_EQ(ephemeral->text, "gone soon");
  EXPECT_EQ(ParseMessageContent(B(Field(55, Field(1, Field(3, "img")))))->type, "imageMessage");
  // Our phone's copy of what it sent to a chat.
  auto own = ParseMessageContent(TextMessage("sent from the phone", "15550002222@s.whatsapp.net"));
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->device_sent_to, "15550002222@s.whatsapp.net");
  EXPECT_EQ(own->type, "conversation");
  EXPECT_EQ(own->text, "sent from the phone");
  EXPECT_EQ(own->raw, B(Field(1, "sent from the phone")));
  // Envelopes inside envelopes, without end, are refused.
  std::string deep = Field(1, "x");
  for (int i = 0; i < 8; ++i) deep = Field(40, Field(1, deep));
  EXPECT_EQ(ParseMessageContent(B(deep)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MessageContent, FindsAGroupsSenderKey) {
  const std::string skd = Field(1, "120363000000000001@g.us") + Field(2, "\x33\x0a\x01\x02");
  auto with_text = ParseMessageContent(B(Field(2, skd) + Field(6, Field(1, "hi group"))));
  ASSERT_TRUE(with_text.ok());
  ASSERT_TRUE(with_text->sender_key);
  EXPECT_EQ(with_text->sender_key->first, "120363000000000001@g.us");
  EXPECT_EQ(with_text->sender_key->second, B("\x33\x0a\x01\x02"));
  EXPECT_EQ(with_text->text, "hi group");
  // A key alone: no content.
  auto alone = ParseMessageContent(B(Field(2, skd)));
  ASSERT_TRUE(alone.ok());
  EXPECT_EQ(alone->type, "");
  EXPECT_TRUE(alone->sender_key);
}

TEST(MessageContent, RefusesWhatIsNotAMessage) {
  for (const std::string& bad :
       {std::string("\x0a\x05hi"), std::string("\xff\xff\xff"), std::string("\x0b")}) {
    EXPECT_EQ(ParseMessageContent(B(bad)).status().code(), absl::StatusCode::kInvalidArgument)
        << bad.size();
  }
}

}  // namespace
}  // namespace wasentinel::signal
