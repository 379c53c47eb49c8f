// One-time pre-keys for a linked device's uploads to WhatsApp (docs/wa-protocol.md §11): when
// the server holds fewer than 5 (the count after login, or its count notification), the session
// makes a batch — 812 the first time, 50 after, as whatsmeow does —, stores the private halves
// and uploads the public ones with its identity and signed pre-key (from its credentials).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "e2ee/signal.h"
#include "store.h"
#include "wasentinel/common/sealing.h"

namespace wasentinel {
class PgPool;
}

namespace wasentinel::session {

class PreKeySupply {
 public:
  using Done = std::function<void(absl::StatusOr<std::vector<signal::PreKey>>)>;
  virtual ~PreKeySupply() = default;
  /// Makes the next batch of one-time pre-keys for `session_id` (ids never handed out before;
  /// signal::kInitialPreKeyUpload when none were ever made, else signal::kPreKeyTopUp) and
  /// stores them, fenced by `lease_token`. `done` gets the keys, on a thread of the supply's:
  /// FAILED_PRECONDITION (IsFenced) when the lease is another replica's, UNAVAILABLE while the
  /// database is down.
  virtual void Make(std::string session_id, int64_t lease_token, Done done) = 0;
  /// The records a new session keeps for one-time pre-keys another client made and uploaded
  /// (Baileys' pre-key-<id>.json files), sealed; its own batches start at `next_id` or after
  /// the highest id given, whichever is later. INVALID_ARGUMENT for a key libsignal refuses.
  virtual absl::StatusOr<ImportedPreKeys> Import(const std::vector<signal::PreKey>& keys,
                                                 uint32_t next_id) = 0;
};

/// The supply over session-service's PostgreSQL tables (pg_signal_store.h): the ids, the keys
/// sealed, in one transaction. One thread of its own does the work.
class PgPreKeySupply final : public PreKeySupply {
 public:
  /// `pool` and `sealer` must outlive it.
  static absl::StatusOr<std::unique_ptr<PgPreKeySupply>> Create(PgPool& pool, const Sealer& sealer);
  ~PgPreKeySupply() override;  // waits for the batch under way

  void Make(std::string session_id, int64_t lease_token, Done done) override;
  absl::StatusOr<ImportedPreKeys> Import(const std::vector<signal::PreKey>& keys,
                                         uint32_t next_id) override;
  /// Make's work on the caller's thread.
  absl::StatusOr<std::vector<signal::PreKey>> MakeNow(const std::string& session_id,
                                                      int64_t lease_token);

 private:
  PgPreKeySupply(PgPool& pool, const Sealer& sealer, std::unique_ptr<signal::Context> context);
  PgPool& pool_;
  const Sealer& sealer_;
  std::unique_ptr<signal::Context> context_;
  boost::asio::thread_pool thread_{1};
};

}  // namespace wasentinel::session
