// alert-service's PostgreSQL store: alerts and their deliveries (the outbox), webhook
// endpoints and silences (README "Architecture" › "Alerts", "gRPC API").
//
// An alert and the deliveries it causes are written in one transaction, so a delivery is never
// lost between the alert being accepted and being sent: nothing is sent from inside a gRPC
// call; dispatchers claim due deliveries later (Claim, with FOR UPDATE SKIP LOCKED).
//
// Alert rules, each inside the Raise / Resolve transaction:
//   - one alert per dedup key while it is not resolved: a repeat folds into it (raise_count);
//     a repeat at a higher severity escalates it and notifies again;
//   - a silence matching the session, tenant and event type (every field it gives) records the
//     alert as SUPPRESSED, with no deliveries;
//   - deliveries: an e-mail to each recipient (the session's owner and the configured ones),
//     a webhook to each enabled endpoint whose filter takes the event type;
//   - resolving sends a resolved notice to every target the alert was notified at.
//
// Times come from the caller (`now`), so tests run on a fake clock.
//
// Tenants: the calls that take a `tenant` see and change only that tenant's alerts, endpoints,
// silences and deliveries when it is not empty (a tenant-scoped API key); "" is every tenant.
// An object of another tenant answers NOT_FOUND as a missing one does. An endpoint with a
// tenant is sent that tenant's alerts only; one without, every tenant's.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "outbox/delivery_store.h"  // EndpointRecord, ClaimedDelivery, AttemptResult
#include "wasentinel/alert/v1/alert.pb.h"

namespace wasentinel {
class PgPool;
struct Migration;
}  // namespace wasentinel

namespace wasentinel::alert {

struct RaiseOutcome {
  v1::Alert alert;  ///< with its deliveries
  bool created = false;
  bool escalated = false;
};

/// A message event (README "Message webhooks"), ready for the outbox.
struct MessageEvent {
  std::string type;            ///< "message.received" | "message.status"
  std::string key;             ///< names the event: each endpoint gets one delivery per key
  std::string tenant_id;       ///< the session's tenant: endpoints of another tenant do not get it
  absl::Time at;               ///< the message's change: endpoints created after it do not get it
  std::string payload_key_id;  ///< the Sealer key of `sealed_payload`
  std::string sealed_payload;  ///< Sealer blob of the JSON "data" (webhooks' body)
};

/// A replica's hold on a followed feed (alert_feeds): whether it holds it, and the cursor.
struct FeedHold {
  bool held = false;
  std::optional<int64_t> after_sequence;  ///< the last sequence handled; unset: none yet
};

struct AlertFilter {
  std::vector<v1::Alert::Status> statuses;  ///< empty: any
  std::string session_id;
  std::string event_type;
  std::string tenant_id;  ///< empty: any
};

struct AlertPage {
  std::vector<v1::Alert> alerts;
  std::string next_page_token;  ///< empty on the last page
};

/// The PostgreSQL store; also the outbox dispatchers deliver from (DeliveryStore). Thread-safe
/// (each call takes a connection of the pool).
class PgAlertStore final : public DeliveryStore {
 public:
  explicit PgAlertStore(PgPool& pool) : pool_(pool) {}
  static const std::vector<Migration>& Migrations();

  /// Records a raise (see the rules above). `emails`: recipients besides the session's owner
  /// (duplicates are dropped). INVALID_ARGUMENT for a missing dedup key (1..200 characters),
  /// event type or severity.
  absl::StatusOr<RaiseOutcome> Raise(const v1::RaiseAlertRequest& req,
                                     const std::vector<std::string>& emails, absl::Time now);
  /// Resolves the alert with this key that is not resolved yet, with resolved notices to every
  /// target it was notified at. Idempotent: the last resolved alert of the key when none is
  /// open. NOT_FOUND when no alert ever had the key.
  absl::StatusOr<v1::Alert> Resolve(const std::string& dedup_key, const std::string& note,
                                    absl::Time now, const std::string& tenant = "");
  /// NOT_FOUND; INVALID_ARGUMENT for an id that is not a UUID.
  absl::StatusOr<v1::Alert> Get(const std::string& id);
  /// Newest first; page_size 1..500.
  absl::StatusOr<AlertPage> List(const AlertFilter& filter, int page_size,
                                 const std::string& page_token);

  /// Reminders: every critical alert still open whose last notification is `interval` old or
  /// older is notified again (KIND_REMINDER) wherever it was notified; at most `limit` alerts per
  /// call. Answers how many alerts were reminded.
  absl::StatusOr<int> Remind(absl::Duration interval, absl::Time now, int limit = 500);

  /// Stores a new endpoint with its secret sealed (`secret_key_id`, `sealed_secret`).
  absl::StatusOr<v1::WebhookEndpoint> CreateEndpoint(const v1::CreateWebhookEndpointRequest& req,
                                                     const std::string& secret_key_id,
                                                     const std::string& sealed_secret,
                                                     absl::Time now,
                                                     const std::string& tenant = "");
  absl::StatusOr<std::vector<v1::WebhookEndpoint>> ListEndpoints(const std::string& tenant = "");
  /// Applies the fields `req` sets (url already checked by the caller). NOT_FOUND.
  absl::StatusOr<v1::WebhookEndpoint> UpdateEndpoint(const v1::UpdateWebhookEndpointRequest& req,
                                                     const std::string& tenant = "");
  /// NOT_FOUND. Its pending deliveries become dead letters when they come up.
  absl::Status DeleteEndpoint(const std::string& id, const std::string& tenant = "");
  /// The new sealed secret becomes current; the current one stays valid until
  /// `previous_valid_until` (both signatures are sent meanwhile). NOT_FOUND.
  absl::StatusOr<v1::WebhookEndpoint> RotateSecret(const std::string& id,
                                                   const std::string& secret_key_id,
                                                   const std::string& sealed_secret,
                                                   absl::Time previous_valid_until, absl::Time now,
                                                   const std::string& tenant = "");

  /// INVALID_ARGUMENT without any of session, tenant, event type, or with `until` not after now.
  absl::StatusOr<v1::Silence> CreateSilence(const v1::CreateSilenceRequest& req, absl::Time now);
  absl::StatusOr<std::vector<v1::Silence>> ListSilences(bool include_expired, absl::Time now,
                                                        const std::string& tenant = "");
  absl::Status DeleteSilence(const std::string& id, const std::string& tenant = "");

  /// Newest first; filters by channel, statuses and alert; page_size 1..500.
  absl::StatusOr<std::pair<std::vector<v1::Delivery>, std::string>> ListDeliveries(
      const v1::ListDeliveriesRequest& req, int page_size, const std::string& tenant = "");
  /// A DEAD or FAILED delivery is due again now with a fresh round of attempts. NOT_FOUND;
  /// FAILED_PRECONDITION for one that is SENT or PENDING.
  absl::StatusOr<v1::Delivery> Redeliver(const std::string& id, absl::Time now,
                                         const std::string& tenant = "");
  /// Counts and created → sent latency by channel and status over deliveries created since
  /// `since`; the outbox depth (PENDING + FAILED) and the age of its oldest.
  absl::StatusOr<v1::GetDeliveryStatsResponse> DeliveryStats(absl::Time since, absl::Time now,
                                                             const std::string& tenant = "");

  /// Takes feed `feed` ("messages") for `holder` until now + `lease` when it is free (never
  /// held, released, or its hold expired), or renews it when `holder` holds it already.
  absl::StatusOr<FeedHold> HoldFeed(const std::string& feed, const std::string& holder,
                                    absl::Time now, absl::Duration lease);
  /// Lets the feed go at once (shutdown), if `holder` holds it.
  absl::Status ReleaseFeed(const std::string& feed, const std::string& holder);
  /// In one transaction: moves the cursor of `feed` from `from` to `to` and renews the hold —
  /// only if `holder` holds it with the cursor still at `from` (the cursor is the fencing token:
  /// a replica whose hold was taken over writes nothing) — and, when `event` is given, writes a
  /// delivery of it to every enabled webhook endpoint that names event->type, of no tenant or
  /// the event's, created by event->at, that has not had one of that key. Answers how many
  /// deliveries were written; ABORTED when the hold is lost.
  absl::StatusOr<int> AdvanceFeed(const std::string& feed, const std::string& holder,
                                  std::optional<int64_t> from, int64_t to,
                                  const MessageEvent* event, absl::Time now, absl::Duration lease);
  /// Deletes the message deliveries SENT or DEAD and created before `before`, `batch` rows a
  /// statement; answers how many.
  absl::StatusOr<int> PruneMessageDeliveries(absl::Time before, int batch = 1000);

  /// Claims up to `limit` due deliveries (PENDING or FAILED, next attempt due, not claimed by
  /// a live claim) for `worker` until now + `lease`, oldest first, with FOR UPDATE SKIP LOCKED:
  /// replicas share the outbox without taking the same row. A claim that expires (its
  /// dispatcher died mid-send) makes the delivery due again: at least once.
  absl::StatusOr<std::vector<ClaimedDelivery>> Claim(const std::string& worker, absl::Time now,
                                                     absl::Duration lease, int limit) override;
  /// Extends the claim of delivery `id` by `claimer` to now + `lease` — if it is still that
  /// claimer's: the claim's token is its fencing token. false when another dispatcher has
  /// claimed it since (this one's claim lapsed) or it is no longer due (sent, dead); the caller
  /// must then not send it.
  absl::StatusOr<bool> Renew(const std::string& id, const std::string& claimer, absl::Time now,
                             absl::Duration lease) override;
  /// Records an attempt of delivery `id`: SENT, FAILED with the next attempt, or DEAD (the
  /// dead letter). A delivery already SENT (another dispatcher after an expired claim) stays so.
  absl::Status Complete(const std::string& id, const AttemptResult& result,
                        absl::Time now) override;

 private:
  PgPool& pool_;
};

}  // namespace wasentinel::alert
