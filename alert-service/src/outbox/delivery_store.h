// The outbox as a dispatcher (delivery/dispatcher.h) sees it: claim the deliveries that are
// due, renew a claim before a send that could outlast it, and record what became of each
// attempt. Nothing else of the store is needed to deliver.
//
// PgAlertStore (outbox/pg_alert_store.h) is the PostgreSQL implementation, shared by every
// replica (README "Architecture" › "Alerts", the Outbox item); the in-memory FakeDeliveryStore of
// alert-service/test/dispatcher_fake_test.cc lets the dispatcher's logic be tested without a
// database.
//
// Threads: a Dispatcher calls one store from each of its threads (DispatcherOptions::threads)
// at once, so implementations are thread-safe. Times come from the caller (`now`, from the
// dispatcher's Clock), so tests run on a fake clock.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wasentinel/alert/v1/alert.pb.h"

namespace wasentinel::alert {

/// A webhook endpoint with its secrets still sealed (the dispatcher opens them with its Sealer,
/// wasentinel/common/sealing.h, to sign).
struct EndpointRecord {
  v1::WebhookEndpoint endpoint;
  std::string secret_key_id;  ///< the Sealer key that sealed `sealed_secret`
  std::string sealed_secret;  ///< Sealer blob of "whsec_…"
  std::string previous_secret_key_id;
  std::string sealed_previous_secret;  ///< empty when none
  /// The end of a rotation's grace period: until then both secrets sign. Unset when none.
  std::optional<absl::Time> previous_valid_until;
};

/// A delivery a dispatcher claimed, with what it needs to send it.
struct ClaimedDelivery {
  /// As stored: `id` (decimal digits), `channel`, `kind`, `target` (the e-mail address, or the
  /// webhook endpoint id), `attempts` made so far (0 before the first), `created_at`.
  v1::Delivery delivery;
  v1::Alert alert;                         ///< without its deliveries; empty for KIND_MESSAGE
  std::optional<EndpointRecord> endpoint;  ///< webhooks; unset when the endpoint was deleted
  /// KIND_MESSAGE: the event's JSON "data", sealed (Sealer blob under `payload_key_id`).
  std::string payload_key_id;
  std::string sealed_payload;
};

/// What became of one attempt.
struct AttemptResult {
  /// kSent: delivered. kRetry: failed, try again at next_attempt_at. kDead: failed for good (the
  /// dead letter). kDefer: not attempted (a rate limit); due again at next_attempt_at, attempts
  /// unchanged.
  enum Kind { kSent, kRetry, kDead, kDefer } kind = kSent;
  std::string error;           ///< kRetry, kDead, kDefer: why, for people (last_error)
  absl::Time next_attempt_at;  ///< kRetry, kDefer
};

/// The dispatcher's view of the outbox. Thread-safe; errors are those of the backing store
/// (PgAlertStore: UNAVAILABLE and the like when PostgreSQL fails, INVALID_ARGUMENT for an id
/// that is not a number).
class DeliveryStore {
 public:
  virtual ~DeliveryStore() = default;

  /// Claims up to `limit` due deliveries (PENDING or FAILED, next_attempt_at <= `now`, not held
  /// by a live claim) for `worker` until `now` + `lease`, the longest overdue first, answered in
  /// id order. `worker` is the claim's token ("<replica>#<n>", unique per claim): its fencing
  /// token for Renew. A claim that expires (its dispatcher died mid-send) makes the delivery due
  /// again: at least once. Called by Dispatcher::RunOnce at the start of each round.
  virtual absl::StatusOr<std::vector<ClaimedDelivery>> Claim(const std::string& worker,
                                                             absl::Time now, absl::Duration lease,
                                                             int limit) = 0;

  /// Extends the claim of delivery `id` by `claimer` to `now` + `lease` — if it is still that
  /// claimer's. false when another dispatcher has claimed it since (this one's claim lapsed) or
  /// it is no longer due (sent, dead); the caller must then not send it. Called by
  /// Dispatcher::RunOnce before a send that could end after the claim.
  virtual absl::StatusOr<bool> Renew(const std::string& id, const std::string& claimer,
                                     absl::Time now, absl::Duration lease) = 0;

  /// Records an attempt of delivery `id` at `now` and releases its claim: kSent → SENT,
  /// kRetry → FAILED due at next_attempt_at, kDead → DEAD (each one more attempt); kDefer → due
  /// at next_attempt_at, status and attempts unchanged. A delivery already SENT (another
  /// dispatcher after an expired claim) stays so. Called by Dispatcher::RunOnce after each send.
  virtual absl::Status Complete(const std::string& id, const AttemptResult& result,
                                absl::Time now) = 0;
};

}  // namespace wasentinel::alert
