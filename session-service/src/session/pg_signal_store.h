// A linked device's Signal state in PostgreSQL (migration 6 of session-service/src/session/
// pg_store.cc): one-time and signed pre-keys, sessions with other devices, their identities,
// group sender keys, and the next pre-key id (ids are never reused). Every record that holds a
// private or chain key is sealed like the credentials (common/include/wasentinel/common/
// sealing.h); identities are public keys and stored as they are.
//
// The state is loaded when a session first needs it (LoadSignalImage; its one-time pre-keys,
// hundreds of them and used once each, are read one by one as a message names one:
// LoadSignalPreKey) and kept in memory by a JournalStore (session-service/src/e2ee/
// journal_store.h) while the session uses it; what an operation changed is written
// with WriteSignalChanges inside the caller's transaction, after checking the session's lease
// still carries the caller's fencing token, so a replica that lost the lease never forks a
// ratchet.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "e2ee/journal_store.h"
#include "wasentinel/common/sealing.h"

namespace pqxx {
class transaction_base;
}

namespace wasentinel::session {

/// FAILED_PRECONDITION (IsFenced) unless the lease of `session_id` carries `lease_token`; the
/// lease row stays share-locked until `tx` ends, so it cannot move meanwhile.
absl::Status CheckLease(pqxx::transaction_base& tx, const std::string& session_id,
                        int64_t lease_token);

/// The state of session `session_id`. DATA_LOSS or FAILED_PRECONDITION when a sealed record
/// does not open (another key, tampering); INVALID_ARGUMENT for a malformed id.
/// `with_pre_keys` false: without the one-time pre-keys.
absl::StatusOr<signal::Image> LoadSignalImage(pqxx::transaction_base& tx, const Sealer& sealer,
                                              const std::string& session_id,
                                              bool with_pre_keys = true);
/// One-time pre-key `id` of `session_id` (nullopt: none, used already). Errors as above.
absl::StatusOr<std::optional<Bytes>> LoadSignalPreKey(pqxx::transaction_base& tx,
                                                      const Sealer& sealer,
                                                      const std::string& session_id, uint32_t id);

/// Writes `changes` for `session_id` in `tx`, first checking the session's lease carries
/// `lease_token` (FAILED_PRECONDITION, IsFenced, when it does not: nothing is written).
absl::Status WriteSignalChanges(pqxx::transaction_base& tx, const Sealer& sealer,
                                const std::string& session_id, int64_t lease_token,
                                const std::vector<signal::Change>& changes);

/// Takes `count` pre-key ids for `session_id`, never handed out before: answers the first (ids
/// run on from it, wrapping past 0xFFFFFE to 1; libsignal never uses up a pre-key with id
/// 0xFFFFFF, its last-resort key). Same fencing as WriteSignalChanges.
absl::StatusOr<uint32_t> TakePreKeyIds(pqxx::transaction_base& tx, const std::string& session_id,
                                       int64_t lease_token, uint32_t count);

}  // namespace wasentinel::session
