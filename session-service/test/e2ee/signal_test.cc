// The Signal layer (session-service/src/e2ee/signal.h) between two in-memory devices: a session
// from a pre-key bundle, 1:1 messages both ways, a group's sender keys, WhatsApp's padding, and
// what is refused: tampered, truncated and duplicate messages, a bundle with a bad signature, a
// pre-key id that does not exist, a changed identity.
#include "e2ee/signal.h"

#include <gtest/gtest.h>

#include <string>

#include "e2ee/journal_store.h"

namespace wasentinel::signal {
namespace {

Bytes B(std::string_view s) { return Bytes(s.begin(), s.end()); }

// One device: its identity, store, 10 pre-keys and a signed pre-key, and its bundle.
struct Device {
  Address address;
  Context& context;
  Identity identity;
  std::unique_ptr<MemoryStore> store;
  std::unique_ptr<Protocol> protocol;
  std::vector<PreKey> pre_keys;
  SignedPreKey signed_pre_key;

  Device(Context& c, Address a) : address(std::move(a)), context(c) {
    identity = c.GenerateIdentity().value();
    store = std::make_unique<MemoryStore>(identity);
    protocol = Protocol::Create(c, *store).value();
    pre_keys = c.GeneratePreKeys(1, 10).value();
    for (const auto& k : pre_keys) {
      EXPECT_TRUE(store->StorePreKey(k.id, c.PreKeyRecord(k).value()).ok());
    }
    signed_pre_key = c.GenerateSignedPreKey(identity, 1).value();
    EXPECT_TRUE(store->StoreSignedPreKey(1, c.SignedPreKeyRecord(signed_pre_key, 0).value()).ok());
  }

  PreKeyBundle Bundle(int pre_key_index = 0) const {
    PreKeyBundle b;
    b.registration_id = identity.registration_id;
    b.device = address.device;
    if (pre_key_index >= 0) b.pre_key = pre_keys[pre_key_index];
    b.signed_pre_key_id = signed_pre_key.id;
    b.signed_pre_key_pub = signed_pre_key.key.pub;
    b.signed_pre_key_signature = signed_pre_key.signature;
    b.identity_pub = identity.key.pub;
    return b;
  }
};

struct Pair : ::testing::Test {
  std::unique_ptr<Context> context = Context::Create().value();
  Device alice{*context, {"15550001111", 0}};
  Device bob{*context, {"15550002222", 3}};
};

TEST_F(Pair, KeysHaveWhatsAppsShapes) {
  EXPECT_EQ(alice.identity.key.pub.size(), 32u);
  EXPECT_EQ(alice.identity.key.priv.size(), 32u);
  EXPECT_GE(alice.identity.registration_id, 1u);
  EXPECT_LE(alice.identity.registration_id, 16380u);
  EXPECT_EQ(alice.signed_pre_key.signature.size(), 64u);
  ASSERT_EQ(alice.pre_keys.size(), 10u);
  EXPECT_EQ(alice.pre_keys.front().id, 1u);
  EXPECT_EQ(alice.pre_keys.back().id, 10u);
  // Ids wrap past 0xFFFFFE to 1, never to 0 or to libsignal's last-resort id 0xFFFFFF.
  auto wrapped = context->GeneratePreKeys(0xFFFFFE, 2).value();
  EXPECT_EQ(wrapped[1].id, 1u);
  EXPECT_EQ(context->GeneratePreKeys(0xFFFFFF, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(context->GeneratePreKeys(0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(context->GeneratePreKeys(1, 1001).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(Pair, OneToOneBothWays) {
  ASSERT_TRUE(alice.protocol->ProcessBundle(bob.address, bob.Bundle(2)).ok());
  EXPECT_TRUE(alice.protocol->HasSession(bob.address).value());
  // Until Bob answers, Alice's messages are pre-key messages.
  auto first = alice.protocol->Encrypt(bob.address, Pad(B("hello Bob"))).value();
  auto second = alice.protocol->Encrypt(bob.address, Pad(B("are you there?"))).value();
  EXPECT_EQ(first.type, MessageType::kPreKey);
  EXPECT_EQ(second.type, MessageType::kPreKey);
  EXPECT_STREQ(MessageTypeName(first.type), "pkmsg");

  const auto got = bob.protocol->Decrypt(alice.address, first.type, first.bytes);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Unpad(*got).value(), B("hello Bob"));
  EXPECT_EQ(bob.store->pre_key_count(), 9u) << "the one-time pre-key is used up";
  EXPECT_EQ(Unpad(bob.protocol->Decrypt(alice.address, second.type, second.bytes).value()).value(),
            B("are you there?"));

  // Bob's answer is a whisper message; after it, Alice's are too.
  auto reply = bob.protocol->Encrypt(alice.address, Pad(B("hi Alice"))).value();
  EXPECT_EQ(reply.type, MessageType::kWhisper);
  EXPECT_EQ(Unpad(alice.protocol->Decrypt(bob.address, reply.type, reply.bytes).value()).value(),
            B("hi Alice"));
  auto third = alice.protocol->Encrypt(bob.address, Pad(B("good"))).value();
  EXPECT_EQ(third.type, MessageType::kWhisper);
  EXPECT_EQ(Unpad(bob.protocol->Decrypt(alice.address, third.type, third.bytes).value()).value(),
            B("good"));

  // The same message again is a duplicate.
  EXPECT_EQ(bob.protocol->Decrypt(alice.address, third.type, third.bytes).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(Pair, BadMessagesAreRefusedWithClearErrors) {
  ASSERT_TRUE(alice.protocol->ProcessBundle(bob.address, bob.Bundle(0)).ok());
  auto message = alice.protocol->Encrypt(bob.address, Pad(B("x"))).value();
  const Bytes truncated(message.bytes.begin(), message.bytes.begin() + 20);
  EXPECT_EQ(bob.protocol->Decrypt(alice.address, message.type, truncated).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bob.protocol->Decrypt(alice.address, message.type, Bytes{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      bob.protocol->Decrypt(alice.address, MessageType::kWhisper, B("garbage")).status().code(),
      absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(bob.protocol->Decrypt(alice.address, message.type, message.bytes).ok());
  auto reply = bob.protocol->Encrypt(alice.address, Pad(B("y"))).value();
  ASSERT_TRUE(alice.protocol->Decrypt(bob.address, reply.type, reply.bytes).ok());

  // A whisper message ends with its 8-byte MAC: one bit changed there, refused (libsignal says
  // "invalid message" for a MAC that does not verify); the message as sent still decrypts.
  auto whisper = alice.protocol->Encrypt(bob.address, Pad(B("z"))).value();
  ASSERT_EQ(whisper.type, MessageType::kWhisper);
  Bytes tampered = whisper.bytes;
  tampered.back() ^= 0x01;
  EXPECT_EQ(bob.protocol->Decrypt(alice.address, whisper.type, tampered).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Unpad(bob.protocol->Decrypt(alice.address, whisper.type, whisper.bytes).value()).value(),
      B("z"));

  // A whisper message from someone Bob has no session with.
  Device carol(*context, {"15550003333", 0});
  ASSERT_TRUE(carol.protocol->ProcessBundle(alice.address, alice.Bundle(0)).ok());
  auto to_alice = carol.protocol->Encrypt(alice.address, Pad(B("hi"))).value();
  ASSERT_TRUE(alice.protocol->Decrypt(carol.address, to_alice.type, to_alice.bytes).ok());
  auto to_carol = alice.protocol->Encrypt(carol.address, Pad(B("hey"))).value();
  ASSERT_EQ(to_carol.type, MessageType::kWhisper);
  EXPECT_EQ(bob.protocol->Decrypt(carol.address, to_carol.type, to_carol.bytes).status().code(),
            absl::StatusCode::kNotFound);

  // A bundle whose signature does not verify.
  PreKeyBundle forged = bob.Bundle(1);
  forged.signed_pre_key_signature[5] ^= 0x40;
  EXPECT_EQ(carol.protocol->ProcessBundle(bob.address, forged).code(),
            absl::StatusCode::kInvalidArgument);
  PreKeyBundle short_key = bob.Bundle(1);
  short_key.identity_pub.pop_back();
  EXPECT_EQ(carol.protocol->ProcessBundle(bob.address, short_key).code(),
            absl::StatusCode::kInvalidArgument);

  // A pre-key message naming a pre-key Bob does not have (Alice's first message used it up).
  ASSERT_TRUE(carol.protocol->ProcessBundle(bob.address, bob.Bundle(0)).ok());
  auto stale = carol.protocol->Encrypt(bob.address, Pad(B("late"))).value();
  EXPECT_EQ(bob.protocol->Decrypt(carol.address, stale.type, stale.bytes).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(Pair, AChangedIdentityIsUntrustedUntilAccepted) {
  ASSERT_TRUE(alice.protocol->ProcessBundle(bob.address, bob.Bundle(0)).ok());
  // Bob's device is reset: a new identity under the same address.
  Device new_bob(*context, bob.address);
  EXPECT_EQ(alice.protocol->ProcessBundle(bob.address, new_bob.Bundle(0)).code(),
            absl::StatusCode::kFailedPrecondition);
  // The caller accepts it (WhatsApp's identity-change notification) and starts over.
  ASSERT_TRUE(alice.store->SaveIdentity(bob.address, new_bob.identity.key.pub).value());
  ASSERT_TRUE(alice.store->DeleteSession(bob.address).ok());
  ASSERT_TRUE(alice.protocol->ProcessBundle(bob.address, new_bob.Bundle(0)).ok());
  auto m = alice.protocol->Encrypt(bob.address, Pad(B("again"))).value();
  EXPECT_EQ(Unpad(new_bob.protocol->Decrypt(alice.address, m.type, m.bytes).value()).value(),
            B("again"));
}

TEST_F(Pair, GroupMessagesWithSenderKeys) {
  const std::string group = "120363000000000001@g.us";
  const Bytes distribution = alice.protocol->SenderKeyDistribution(group, alice.address).value();
  // The distribution travels inside a 1:1 message; here it is handed over directly.
  ASSERT_TRUE(bob.protocol->ProcessSenderKeyDistribution(group, alice.address, distribution).ok());
  for (const char* text : {"hello group", "second", "third"}) {
    auto sk = alice.protocol->GroupEncrypt(group, alice.address, Pad(B(text))).value();
    auto got = bob.protocol->GroupDecrypt(group, alice.address, sk);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(Unpad(*got).value(), B(text));
  }
  auto again = alice.protocol->GroupEncrypt(group, alice.address, Pad(B("x"))).value();
  ASSERT_TRUE(bob.protocol->GroupDecrypt(group, alice.address, again).ok());
  EXPECT_EQ(bob.protocol->GroupDecrypt(group, alice.address, again).status().code(),
            absl::StatusCode::kAlreadyExists);
  Bytes forged = alice.protocol->GroupEncrypt(group, alice.address, Pad(B("y"))).value();
  forged[forged.size() - 10] ^= 0x01;  // inside the signature
  EXPECT_FALSE(bob.protocol->GroupDecrypt(group, alice.address, forged).ok());
  // No sender key from this sender: refused.
  EXPECT_EQ(alice.protocol->GroupDecrypt(group, bob.address, again).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(bob.protocol->ProcessSenderKeyDistribution(group, alice.address, B("junk")).code(),
            absl::StatusCode::kInvalidArgument);
}

// What a decryption changed, as the journal tells it, is all a device needs to go on: applied
// to an image (as PostgreSQL would keep it) and loaded into a new store, the conversation
// continues.
TEST_F(Pair, TheJournalIsEverythingThatChanged) {
  const Identity bob_identity = bob.identity;
  Image persisted;
  for (const auto& k : bob.pre_keys) persisted.pre_keys[k.id] = context->PreKeyRecord(k).value();
  persisted.signed_pre_keys[1] = context->SignedPreKeyRecord(bob.signed_pre_key, 0).value();
  auto apply = [&](const std::vector<Change>& changes) {
    for (const Change& c : changes) {
      const auto key = std::make_pair(c.address.name, c.address.device);
      switch (c.kind) {
        case Change::Kind::kPreKey:
          if (c.value)
            persisted.pre_keys[c.id] = *c.value;
          else
            persisted.pre_keys.erase(c.id);
          break;
        case Change::Kind::kSignedPreKey:
          persisted.signed_pre_keys[c.id] = *c.value;
          break;
        case Change::Kind::kSession:
          if (c.value)
            persisted.sessions[key] = *c.value;
          else
            persisted.sessions.erase(key);
          break;
        case Change::Kind::kIdentity:
          persisted.identities[key] = *c.value;
          break;
        case Change::Kind::kSenderKey:
          persisted.sender_keys[{c.group, c.address.name, c.address.device}] = *c.value;
          break;
      }
    }
  };
  auto journal = std::make_unique<JournalStore>(bob_identity, persisted);
  auto protocol = Protocol::Create(*context, *journal).value();

  ASSERT_TRUE(alice.protocol->ProcessBundle(bob.address, bob.Bundle(4)).ok());
  auto first = alice.protocol->Encrypt(bob.address, Pad(B("one"))).value();
  ASSERT_EQ(Unpad(protocol->Decrypt(alice.address, first.type, first.bytes).value()).value(),
            B("one"));
  const auto changes = journal->TakeJournal();
  bool removed_pre_key = false, stored_session = false, saved_identity = false;
  for (const Change& c : changes) {
    removed_pre_key |= c.kind == Change::Kind::kPreKey && c.id == 5 && !c.value;
    stored_session |= c.kind == Change::Kind::kSession && c.address == alice.address && c.value;
    saved_identity |= c.kind == Change::Kind::kIdentity && c.address == alice.address &&
                      *c.value == alice.identity.key.pub;
  }
  EXPECT_TRUE(removed_pre_key && stored_session && saved_identity) << changes.size() << " changes";
  EXPECT_TRUE(journal->TakeJournal().empty());
  apply(changes);

  // A new store from what was persisted: the next message decrypts, the pre-key stays gone.
  protocol.reset();
  journal = std::make_unique<JournalStore>(bob_identity, persisted);
  protocol = Protocol::Create(*context, *journal).value();
  EXPECT_EQ(journal->pre_key_count(), 9u);
  auto second = alice.protocol->Encrypt(bob.address, Pad(B("two"))).value();
  ASSERT_EQ(Unpad(protocol->Decrypt(alice.address, second.type, second.bytes).value()).value(),
            B("two"));
  // A replay of the first message after the reload is still a duplicate.
  EXPECT_FALSE(protocol->Decrypt(alice.address, first.type, first.bytes).ok());
}

TEST(Padding, WhatsAppsRandomPadding) {
  for (int i = 0; i < 200; ++i) {
    const Bytes padded = Pad(B("abc"));
    const uint8_t n = padded.back();
    ASSERT_GE(n, 1);
    ASSERT_LE(n, 15);
    ASSERT_EQ(padded.size(), 3u + n);
    ASSERT_EQ(Unpad(padded).value(), B("abc"));
  }
  EXPECT_EQ(Pad(B("a"), 3), (Bytes{'a', 3, 3, 3}));
  EXPECT_EQ(Unpad(Bytes{}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Unpad(Bytes{'a', 0}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Unpad(Bytes{'a', 5}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Unpad(Bytes{'a', 1, 2}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Unpad(Bytes{2, 2}).value(), Bytes{});
}

}  // namespace
}  // namespace wasentinel::signal
