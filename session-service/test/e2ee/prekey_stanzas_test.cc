// The pre-key stanzas (session-service/src/e2ee/prekey_stanzas.h) through the binary node codec:
// an upload and a bundle answer read back as written, the shapes whatsmeow sends and reads
// (3-byte key ids, 4-byte registration, <keys> wrapper, per-user errors), and malformed ones
// refused with the part named.
#include "e2ee/prekey_stanzas.h"

#include <gtest/gtest.h>

#include "e2ee/journal_store.h"

namespace wasentinel::signal {
namespace {

// Through the wire codec and back, as the stanza travels.
wa::Node Wire(const wa::Node& n) { return wa::DecodeNode(wa::EncodeNode(n).value()).value(); }

struct Keys : ::testing::Test {
  std::unique_ptr<Context> context = Context::Create().value();
  Identity identity = context->GenerateIdentity().value();
  SignedPreKey signed_key = context->GenerateSignedPreKey(identity, 7).value();
  std::vector<PreKey> pre_keys = context->GeneratePreKeys(0xFFFFFE, 3).value();  // wraps to 1

  PreKeyBundle Bundle(bool with_pre_key) const {
    PreKeyBundle b{identity.registration_id,
                   0,
                   std::nullopt,
                   signed_key.id,
                   signed_key.key.pub,
                   signed_key.signature,
                   identity.key.pub};
    if (with_pre_key) {
      b.pre_key = pre_keys[0];
      b.pre_key->key.priv.clear();
    }
    return b;
  }
};

TEST_F(Keys, AnUploadReadsBackAsWritten) {
  const wa::Node iq =
      PreKeyUploadIq({identity.registration_id, identity.key.pub, signed_key, pre_keys});
  EXPECT_EQ(iq.AttrOr("xmlns"), "encrypt");
  EXPECT_EQ(iq.AttrOr("type"), "set");
  EXPECT_EQ(iq.Child("registration")->ContentBytes().size(), 4u);
  EXPECT_EQ(iq.Child("list")->Children().at(0).Child("id")->ContentBytes().size(), 3u);
  auto back = ParsePreKeyUploadIq(Wire(iq));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->registration_id, identity.registration_id);
  EXPECT_EQ(back->identity_pub, identity.key.pub);
  EXPECT_EQ(back->signed_pre_key.id, 7u);
  EXPECT_EQ(back->signed_pre_key.signature, signed_key.signature);
  ASSERT_EQ(back->pre_keys.size(), 3u);
  EXPECT_EQ(back->pre_keys[0].id, 0xFFFFFEu);
  EXPECT_EQ(back->pre_keys[1].id, 1u);
  EXPECT_EQ(back->pre_keys[2].id, 2u);
  EXPECT_EQ(back->pre_keys[1].key.pub, pre_keys[1].key.pub);

  wa::Node bad = iq;
  std::get<std::vector<wa::Node>>(bad.content)[2] = wa::MakeNode("identity", {}, Bytes(31, 1));
  EXPECT_EQ(ParsePreKeyUploadIq(bad).status().message(), "<identity> must be 32 bytes, not 31");
  EXPECT_FALSE(ParsePreKeyUploadIq(wa::MakeNode("iq", {{"xmlns", "encrypt"}})).ok());
}

TEST_F(Keys, ABundleAnswerWithKeysAndErrors) {
  const std::vector<std::string> jids = {"15550001111:3@s.whatsapp.net",
                                         "15550002222@s.whatsapp.net"};
  auto asked = ParseBundleRequestIq(Wire(BundleRequestIq(jids)));
  ASSERT_TRUE(asked.ok()) << asked.status();
  EXPECT_EQ(*asked, jids);

  const wa::Node answer =
      BundleResultIq("abc", {{jids[0], Bundle(true)}, {jids[1], absl::NotFoundError("gone")}});
  auto read = ParseBundleResultIq(Wire(answer));
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 2u);
  ASSERT_TRUE((*read)[0].bundle.ok()) << (*read)[0].bundle.status();
  const PreKeyBundle& b = *(*read)[0].bundle;
  EXPECT_EQ(b.device, 3);
  EXPECT_EQ(b.registration_id, identity.registration_id);
  EXPECT_EQ(b.identity_pub, identity.key.pub);
  ASSERT_TRUE(b.pre_key.has_value());
  EXPECT_EQ(b.pre_key->id, 0xFFFFFEu);
  EXPECT_EQ(b.signed_pre_key_signature, signed_key.signature);
  EXPECT_EQ((*read)[1].bundle.status().code(), absl::StatusCode::kNotFound);

  // whatsmeow also reads the keys inside a <keys> child, and a bundle without a one-time key.
  wa::Node wrapped = wa::MakeNode(
      "iq", {{"type", "result"}},
      std::vector<wa::Node>{wa::MakeNode(
          "list", {},
          std::vector<wa::Node>{wa::MakeNode(
              "user", {{"jid", jids[1]}},
              std::vector<wa::Node>{
                  wa::MakeNode("registration", {}, Bytes{0, 0, 1, 2}),
                  wa::MakeNode("keys", {},
                               std::vector<wa::Node>{
                                   wa::MakeNode("identity", {}, identity.key.pub),
                                   wa::MakeNode("skey", {},
                                                std::vector<wa::Node>{
                                                    wa::MakeNode("id", {}, Bytes{0, 0, 7}),
                                                    wa::MakeNode("value", {}, signed_key.key.pub),
                                                    wa::MakeNode("signature", {},
                                                                 signed_key.signature)})})})})});
  auto w = ParseBundleResultIq(Wire(wrapped));
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)[0].bundle.ok()) << (*w)[0].bundle.status();
  EXPECT_EQ((*w)[0].bundle->registration_id, 258u);
  EXPECT_FALSE((*w)[0].bundle->pre_key.has_value());

  // A processed answer starts a session that works (the keys are usable as read).
  MemoryStore mine(context->GenerateIdentity().value());
  auto protocol = Protocol::Create(*context, mine).value();
  EXPECT_TRUE(protocol->ProcessBundle({"15550001111", 3}, b).ok());
  EXPECT_FALSE(ParseBundleResultIq(wa::MakeNode("iq")).ok());
}

}  // namespace
}  // namespace wasentinel::signal
