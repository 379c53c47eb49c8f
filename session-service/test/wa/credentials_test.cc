// Baileys' auth-state files beside creds.json (session-service/src/wa/credentials.h): the
// pre-key-<id>.json files an imported session must keep, read as Baileys writes them
// (BufferJSON: {"type":"Buffer","data":"<base64>"}), and what is refused.
#include "credentials.h"

#include <gtest/gtest.h>

#include "baileys_prekeys.h"
#include "crypto.h"

namespace wasentinel::wa {
namespace {

std::string Buffer(ByteView b) {
  return "{\"type\":\"Buffer\",\"data\":\"" + Base64Encode(b) + "\"}";
}

std::string PreKeyJson(const KeyPair& k, ByteView pub_override = {}) {
  const ByteView pub = pub_override.empty() ? ByteView(k.pub) : pub_override;
  return "{\"private\":" + Buffer(k.priv) + ",\"public\":" + Buffer(pub) + "}";
}

TEST(BaileysPreKeyFile, ReadsTheIdAndTheKeyPair) {
  const KeyPair k = KeyPair::Generate();
  auto read = ParseBaileysPreKeyFile("pre-key-31.json", PreKeyJson(k));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->id, 31u);
  EXPECT_EQ(read->key.pub, k.pub);
  EXPECT_EQ(read->key.priv, k.priv);
  // libsignal's 33-byte form of the public half is taken too.
  const Bytes prefixed = SignalPublicKey(k.pub);
  EXPECT_TRUE(ParseBaileysPreKeyFile("pre-key-1.json", PreKeyJson(k, prefixed)).ok());
}

TEST(BaileysPreKeyFile, RefusesWhatIsNotOne) {
  const KeyPair k = KeyPair::Generate();
  const KeyPair other = KeyPair::Generate();
  for (const char* name : {"pre-key-.json", "pre-key-x.json", "prekey-3.json", "pre-key-3.txt",
                           "pre-key-0.json", "pre-key-16777215.json", "session-3.json"}) {
    EXPECT_EQ(ParseBaileysPreKeyFile(name, PreKeyJson(k)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << name;
  }
  EXPECT_FALSE(ParseBaileysPreKeyFile("pre-key-3.json", "not json").ok());
  EXPECT_FALSE(ParseBaileysPreKeyFile("pre-key-3.json", "[]").ok());
  EXPECT_FALSE(
      ParseBaileysPreKeyFile("pre-key-3.json", "{\"private\":" + Buffer(k.priv) + "}").ok());
  const auto mismatch = ParseBaileysPreKeyFile("pre-key-3.json", PreKeyJson(k, other.pub));
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatch.status().message().find("does not belong"), std::string::npos)
      << mismatch.status();
}

}  // namespace
}  // namespace wasentinel::wa
