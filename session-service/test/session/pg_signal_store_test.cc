// A device's Signal state in PostgreSQL (session-service/src/session/pg_signal_store.h): what a
// JournalStore recorded is written under the session's lease and loads back whole; secret records
// are sealed at rest; a stale fencing token writes nothing; pre-key ids are never handed out twice.
#include "pg_signal_store.h"

#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "e2ee/journal_store.h"
#include "e2ee/signal.h"
#include "pg_store.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/testing/status_matchers.h"
#include "wasentinel/testing/test_database.h"

namespace wasentinel::session {
namespace {

using ::wasentinel::testing::IsOk;

struct Fixture : wasentinel::testing::MigratedDatabase<PgSessionStore> {
  Fixture() : MigratedDatabase("session-service") {}
  Sealer sealer = Sealer::FromConfig("k1:" + std::string(64, 'a')).value();

  std::string NewSession() {
    SessionRecord r;
    r.tenant_id = "acme";
    r.session_name = "s" + std::to_string(++n_);
    return store.Create(r).value().first.id;
  }
  int64_t Lease(const std::string& id) {
    const int64_t holder = store.StartHolder({"replica-a", ""}, absl::Minutes(1)).value();
    return store.AcquireLeases({id}, "replica-a", holder).value().at(0).token;
  }
  absl::Status Write(const std::string& id, int64_t token,
                     const std::vector<signal::Change>& changes) {
    absl::Status written;
    const absl::Status committed = pool->Transact("write signal state", [&](pqxx::work& w) {
      written = WriteSignalChanges(w, sealer, id, token, changes);
    });
    return committed.ok() ? written : committed;
  }
  // What a device publishes, in `store` and written for session `id`: one-time pre-keys 1..3
  // and signed pre-key 1.
  struct Published {
    std::vector<signal::PreKey> pre_keys;
    signal::SignedPreKey signed_key;
  };
  Published Publish(signal::Context& context, const signal::Identity& me,
                    signal::JournalStore& store, const std::string& id, int64_t token) {
    Published out{context.GeneratePreKeys(1, 3).value(),
                  context.GenerateSignedPreKey(me, 1).value()};
    for (const auto& k : out.pre_keys) {
      EXPECT_THAT(store.StorePreKey(k.id, context.PreKeyRecord(k).value()), IsOk());
    }
    EXPECT_THAT(store.StoreSignedPreKey(1, context.SignedPreKeyRecord(out.signed_key, 0).value()),
                IsOk());
    EXPECT_THAT(Write(id, token, store.TakeJournal()), IsOk());
    return out;
  }
  absl::StatusOr<signal::Image> Load(const std::string& id) {
    absl::StatusOr<signal::Image> out = absl::InternalError("not read");
    auto st = pool->Transact("load signal state",
                             [&](pqxx::work& w) { out = LoadSignalImage(w, sealer, id); });
    if (!st.ok()) return st;
    return out;
  }

 private:
  int n_ = 0;
};

TEST(PgSignalStore, AConversationsStateIsWrittenUnderTheLeaseAndLoadsBack) {
  Fixture f;
  const std::string id = f.NewSession();
  const int64_t token = f.Lease(id);
  auto context = signal::Context::Create().value();
  const signal::Identity me = context->GenerateIdentity().value();

  // This device publishes pre-keys; a peer starts a session and writes twice, then a group.
  signal::JournalStore store(me);
  auto protocol = signal::Protocol::Create(*context, store).value();
  const auto [pre_keys, signed_key] = f.Publish(*context, me, store, id, token);

  const signal::Address peer{"15550002222", 0}, self{"15550001111", 4};
  signal::MemoryStore peer_store(context->GenerateIdentity().value());
  auto peer_protocol = signal::Protocol::Create(*context, peer_store).value();
  signal::PreKeyBundle bundle{me.registration_id, self.device,          pre_keys[1], signed_key.id,
                              signed_key.key.pub, signed_key.signature, me.key.pub};
  ASSERT_THAT(peer_protocol->ProcessBundle(self, bundle), IsOk());
  auto one = peer_protocol->Encrypt(self, signal::Pad(Bytes{'1'})).value();
  ASSERT_TRUE(protocol->Decrypt(peer, one.type, one.bytes).ok());
  const std::string group = "120363000000000001@g.us";
  ASSERT_THAT(protocol->ProcessSenderKeyDistribution(
                  group, peer, peer_protocol->SenderKeyDistribution(group, peer).value()),
              IsOk());
  ASSERT_THAT(f.Write(id, token, store.TakeJournal()), IsOk());

  // Loaded back: two pre-keys left, the session, the peer's identity, its sender key.
  auto image = f.Load(id);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->pre_keys.size(), 2u);
  EXPECT_EQ(image->pre_keys.count(2), 0u);
  EXPECT_EQ(image->signed_pre_keys.size(), 1u);
  EXPECT_EQ(image->sessions.size(), 1u);
  EXPECT_EQ(image->identities.at({peer.name, peer.device}), peer_store.LocalIdentity()->key.pub);
  EXPECT_EQ(image->sender_keys.size(), 1u);
  // A store on the loaded state goes on with the conversation.
  signal::JournalStore reloaded(me, *image);
  auto again = signal::Protocol::Create(*context, reloaded).value();
  auto two = peer_protocol->Encrypt(self, signal::Pad(Bytes{'2'})).value();
  EXPECT_EQ(signal::Unpad(again->Decrypt(peer, two.type, two.bytes).value()).value(), Bytes{'2'});
  auto in_group = peer_protocol->GroupEncrypt(group, peer, signal::Pad(Bytes{'g'})).value();
  EXPECT_TRUE(again->GroupDecrypt(group, peer, in_group).ok());

  // Sealed at rest: no record holds the session's bytes in the clear.
  const Bytes session_record = image->sessions.begin()->second;
  auto raw = f.pool->Run("read raw", [&](pqxx::connection& c) {
    pqxx::nontransaction n(c);
    auto r = n.exec("SELECT seal_key, record FROM signal_sessions");
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0][0].as<std::string>(), "k1");
    pqxx::binarystring blob(r[0][1]);
    const std::string stored(blob.str());
    EXPECT_EQ(stored.find(std::string(session_record.begin(), session_record.begin() + 16)),
              std::string::npos);
  });
  EXPECT_THAT(raw, IsOk());
}

TEST(PgSignalStore, OneTimePreKeysAreReadOnlyWhenAMessageNamesOne) {
  Fixture f;
  const std::string id = f.NewSession();
  const int64_t token = f.Lease(id);
  auto context = signal::Context::Create().value();
  const signal::Identity me = context->GenerateIdentity().value();
  signal::JournalStore publisher(me);
  const auto [pre_keys, signed_key] = f.Publish(*context, me, publisher, id, token);

  // The image without them, and a store that reads the one a message names.
  absl::StatusOr<signal::Image> image = absl::InternalError("not read");
  ASSERT_THAT(f.pool->Transact("load",
                               [&](pqxx::work& w) {
                                 image = LoadSignalImage(w, f.sealer, id, /*with_pre_keys=*/false);
                               }),
              IsOk());
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_TRUE(image->pre_keys.empty());
  auto read_key = [&](uint32_t key) {
    absl::StatusOr<std::optional<Bytes>> out = absl::InternalError("not read");
    EXPECT_THAT(
        f.pool->Transact("load a pre-key",
                         [&](pqxx::work& w) { out = LoadSignalPreKey(w, f.sealer, id, key); }),
        IsOk());
    return out;
  };
  signal::JournalStore store(me, *image);
  std::vector<uint32_t> asked;
  store.set_pre_key_loader([&](uint32_t key) {
    asked.push_back(key);
    return read_key(key);
  });
  auto protocol = signal::Protocol::Create(*context, store).value();
  const signal::Address peer{"15550002222", 0}, self{"15550001111", 4};
  signal::MemoryStore peer_store(context->GenerateIdentity().value());
  auto peer_protocol = signal::Protocol::Create(*context, peer_store).value();
  signal::PreKeyBundle bundle{me.registration_id, self.device,          pre_keys[1], signed_key.id,
                              signed_key.key.pub, signed_key.signature, me.key.pub};
  ASSERT_THAT(peer_protocol->ProcessBundle(self, bundle), IsOk());
  auto one = peer_protocol->Encrypt(self, signal::Pad(Bytes{'1'})).value();
  auto plain = protocol->Decrypt(peer, one.type, one.bytes);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(asked, std::vector<uint32_t>{pre_keys[1].id}) << "only the key the message names";
  ASSERT_THAT(f.Write(id, token, store.TakeJournal()), IsOk());
  // Used up in PostgreSQL too; the others are still there.
  EXPECT_FALSE(read_key(pre_keys[1].id)->has_value());
  EXPECT_TRUE(read_key(pre_keys[2].id)->has_value());
  EXPECT_FALSE(read_key(999)->has_value()) << "one never made";

  // A key that cannot be read fails the decryption as the store's error, not the message's.
  signal::JournalStore broken(me, *image);
  broken.set_pre_key_loader([](uint32_t) -> absl::StatusOr<std::optional<Bytes>> {
    return absl::UnavailableError("down");
  });
  auto broken_protocol = signal::Protocol::Create(*context, broken).value();
  signal::MemoryStore other_store(context->GenerateIdentity().value());
  auto other = signal::Protocol::Create(*context, other_store).value();
  signal::PreKeyBundle bundle3{me.registration_id, self.device,          pre_keys[2], signed_key.id,
                               signed_key.key.pub, signed_key.signature, me.key.pub};
  ASSERT_THAT(other->ProcessBundle(self, bundle3), IsOk());
  auto three = other->Encrypt(self, signal::Pad(Bytes{'3'})).value();
  auto failed = broken_protocol->Decrypt({"15550003333", 0}, three.type, three.bytes);
  EXPECT_TRUE(signal::IsStoreError(failed.status())) << failed.status();
  EXPECT_FALSE(signal::IsStoreError(absl::FailedPreconditionError("untrusted identity")));
}

TEST(PgSignalStore, AStaleTokenWritesNothing) {
  Fixture f;
  const std::string id = f.NewSession();
  const int64_t token = f.Lease(id);
  const signal::Change change{signal::Change::Kind::kPreKey, 7, {}, {}, Bytes{1, 2, 3}};
  const absl::Status stale = f.Write(id, token + 1000, {change});
  EXPECT_TRUE(IsFenced(stale)) << stale;
  EXPECT_TRUE(f.Load(id)->pre_keys.empty());
  ASSERT_THAT(f.Write(id, token, {change}), IsOk());
  EXPECT_EQ(f.Load(id)->pre_keys.at(7), (Bytes{1, 2, 3}));
  // A record sealed under a key this service no longer has does not open.
  f.sealer = Sealer::FromConfig("k2:" + std::string(64, 'b')).value();
  EXPECT_FALSE(f.Load(id).ok());
}

TEST(PgSignalStore, PreKeyIdsAreNeverHandedOutTwice) {
  Fixture f;
  const std::string id = f.NewSession();
  const int64_t token = f.Lease(id);
  auto take = [&](uint32_t count) {
    absl::StatusOr<uint32_t> first = absl::InternalError("not run");
    EXPECT_THAT(f.pool->Transact(
                    "take ids", [&](pqxx::work& w) { first = TakePreKeyIds(w, id, token, count); }),
                IsOk());
    return first;
  };
  EXPECT_EQ(take(812).value(), 1u);  // whatsmeow's first upload
  EXPECT_EQ(take(50).value(), 813u);
  EXPECT_EQ(take(50).value(), 863u);
  EXPECT_EQ(take(0).status().code(), absl::StatusCode::kInvalidArgument);
  // Near the top the ids wrap to 1, never 0.
  ASSERT_THAT(
      f.pool->Run(
          "near the top",
          [&](pqxx::connection& c) {
            pqxx::nontransaction n(c);
            n.exec_params(
                "UPDATE signal_pre_key_ids SET next_id = 16777214 WHERE session_id = $1::uuid", id);
          }),
      IsOk());
  EXPECT_EQ(take(3).value(), 16777214u);  // 16777214, 1, 2: 0xFFFFFF is never handed out
  EXPECT_EQ(take(1).value(), 3u);
}

}  // namespace
}  // namespace wasentinel::session
