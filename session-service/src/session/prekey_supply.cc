#include "prekey_supply.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "e2ee/journal_store.h"
#include "e2ee/prekey_stanzas.h"
#include "pg_signal_store.h"
#include "wasentinel/common/pg.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {

absl::StatusOr<std::unique_ptr<PgPreKeySupply>> PgPreKeySupply::Create(PgPool& pool,
                                                                       const Sealer& sealer) {
  WAS_ASSIGN_OR_RETURN(auto context, signal::Context::Create());
  return std::unique_ptr<PgPreKeySupply>(new PgPreKeySupply(pool, sealer, std::move(context)));
}

PgPreKeySupply::PgPreKeySupply(PgPool& pool, const Sealer& sealer,
                               std::unique_ptr<signal::Context> context)
    : pool_(pool), sealer_(sealer), context_(std::move(context)) {}

PgPreKeySupply::~PgPreKeySupply() { thread_.join(); }

void PgPreKeySupply::Make(std::string session_id, int64_t lease_token, Done done) {
  boost::asio::post(thread_, [this, id = std::move(session_id), lease_token,
                              done = std::move(done)] { done(MakeNow(id, lease_token)); });
}

absl::StatusOr<std::vector<signal::PreKey>> PgPreKeySupply::MakeNow(const std::string& session_id,
                                                                    int64_t lease_token) {
  // `refused`: why the batch was not made, though the database answered; nothing of it is kept.
  absl::Status refused;
  std::vector<signal::PreKey> made;
  auto refuse = [&](absl::Status st) {
    refused = std::move(st);
    throw std::runtime_error(std::string(refused.message()));  // rolls the ids back too
  };
  const absl::Status committed = pool_.Transact("make pre-keys", [&](pqxx::work& w) {
    made.clear();
    // The first batch of a device is the large one: nothing was ever uploaded for it.
    const bool first =
        w.exec_params("SELECT 1 FROM signal_pre_key_ids WHERE session_id = $1::uuid", session_id)
            .empty();
    const uint32_t count = first ? signal::kInitialPreKeyUpload : signal::kPreKeyTopUp;
    auto start = TakePreKeyIds(w, session_id, lease_token, count);
    if (!start.ok()) refuse(start.status());
    auto keys = context_->GeneratePreKeys(*start, count);
    if (!keys.ok()) refuse(keys.status());
    std::vector<signal::Change> changes;
    changes.reserve(keys->size());
    for (const auto& k : *keys) {
      auto record = context_->PreKeyRecord(k);
      if (!record.ok()) refuse(record.status());
      changes.push_back({signal::Change::Kind::kPreKey, k.id, {}, {}, *std::move(record)});
    }
    if (auto st = WriteSignalChanges(w, sealer_, session_id, lease_token, changes); !st.ok()) {
      refuse(st);
    }
    made = *std::move(keys);
  });
  if (!refused.ok()) return refused;
  if (!committed.ok()) return committed;
  return made;
}

absl::StatusOr<ImportedPreKeys> PgPreKeySupply::Import(const std::vector<signal::PreKey>& keys,
                                                       uint32_t next_id) {
  ImportedPreKeys out;
  out.next_id = std::max<uint32_t>(next_id, 1);
  for (const auto& k : keys) {
    if (k.id == 0 || k.id > 0xFFFFFE) {
      return absl::InvalidArgumentError(absl::StrCat("pre-key id ", k.id, " is out of range"));
    }
    WAS_ASSIGN_OR_RETURN(Bytes record, context_->PreKeyRecord(k));
    auto sealed = sealer_.Seal(record);
    out.keys.emplace_back(k.id, SealedCredentials{sealed.key_id, std::move(sealed.blob)});
    out.next_id = std::max(out.next_id, k.id + 1);
  }
  if (out.next_id > 0xFFFFFE) out.next_id = 1;  // the ids wrap (pg_signal_store.h)
  return out;
}

}  // namespace wasentinel::session
