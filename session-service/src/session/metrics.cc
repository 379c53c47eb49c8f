#include "metrics.h"

#include "absl/strings/str_cat.h"
#include "pg_store.h"

namespace wasentinel::session {

SessionMetrics::SessionMetrics(prometheus::Registry& registry)
    : sessions_(prometheus::BuildGauge()
                    .Name("wasentinel_sessions")
                    .Help("Sessions held by this session-service, by state")
                    .Register(registry)),
      transitions_(prometheus::BuildCounter()
                       .Name("wasentinel_session_transitions_total")
                       .Help("Session state changes, by from, to and reason")
                       .Register(registry)),
      keepalive_rtt_(
          prometheus::BuildHistogram()
              .Name("wasentinel_keepalive_rtt_seconds")
              .Help("Round trip of answered keepalive pings")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                               0.5, 1, 2.5, 5, 10})),
      keepalive_missed_(prometheus::BuildCounter()
                            .Name("wasentinel_keepalive_missed_total")
                            .Help("Keepalive pings that got no answer in time")
                            .Register(registry)
                            .Add({})),
      inbound_messages_(prometheus::BuildCounter()
                            .Name("wasentinel_inbound_messages_total")
                            .Help("Inbound <message> stanzas acknowledged")
                            .Register(registry)
                            .Add({})),
      connect_seconds_(
          prometheus::BuildHistogram()
              .Name("wasentinel_connect_seconds")
              .Help("Time from CONNECTING to CONNECTED")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                                               20, 30, 60})),
      leases_(prometheus::BuildGauge()
                  .Name("wasentinel_session_leases")
                  .Help("Session leases this replica holds (the sessions it owns)")
                  .Register(registry)
                  .Add({})),
      lease_changes_(prometheus::BuildCounter()
                         .Name("wasentinel_session_lease_changes_total")
                         .Help("Session leases acquired and lost by this replica")
                         .Register(registry)),
      forwarded_(prometheus::BuildCounter()
                     .Name("wasentinel_forwarded_calls_total")
                     .Help("gRPC calls forwarded to the replica holding the session, by method")
                     .Register(registry)),
      watchers_cut_off_(prometheus::BuildCounter()
                            .Name("wasentinel_watchers_cut_off_total")
                            .Help("Watches refused or ended RESOURCE_EXHAUSTED: fell behind, or "
                                  "over the key's limit")
                            .Register(registry)),
      prekey_uploads_(prometheus::BuildCounter()
                          .Name("wasentinel_prekey_uploads_total")
                          .Help("One-time pre-key batches uploaded to WhatsApp, or failed")
                          .Register(registry)),
      messages_received_(prometheus::BuildCounter()
                             .Name("wasentinel_messages_received_total")
                             .Help("End-to-end encrypted messages received, by outcome")
                             .Register(registry)),
      messages_sent_(prometheus::BuildCounter()
                         .Name("wasentinel_messages_sent_total")
                         .Help("Messages sent, by outcome")
                         .Register(registry)) {
  for (const char* result : {"sent", "acked", "failed", "resent"}) {
    messages_sent_.Add({{"result", result}});
  }
  for (const char* result : {"stored", "duplicate", "undecryptable", "failed"}) {
    messages_received_.Add({{"result", result}});
  }
  for (const char* result : {"uploaded", "failed"}) prekey_uploads_.Add({{"result", result}});
  for (const char* change : {"acquired", "lost"}) lease_changes_.Add({{"change", change}});
  for (const char* reason : {"behind", "limit"}) watchers_cut_off_.Add({{"reason", reason}});
  for (int s = v1::SessionState_MIN; s <= v1::SessionState_MAX; ++s) {
    if (s == v1::SESSION_STATE_UNSPECIFIED || s == v1::SESSION_STATE_DELETED) continue;
    sessions_.Add({{"state", StateName(static_cast<v1::SessionState>(s))}}).Set(0);
  }
}

void SessionMetrics::Forgotten(v1::SessionState state) {
  if (state != v1::SESSION_STATE_UNSPECIFIED && state != v1::SESSION_STATE_DELETED) {
    sessions_.Add({{"state", StateName(state)}}).Decrement();
  }
}

void SessionMetrics::Transition(v1::SessionState from, v1::SessionState to,
                                v1::StateReason reason) {
  if (from != v1::SESSION_STATE_UNSPECIFIED)
    sessions_.Add({{"state", StateName(from)}}).Decrement();
  if (to != v1::SESSION_STATE_DELETED) sessions_.Add({{"state", StateName(to)}}).Increment();
  const std::string key = absl::StrCat(from, "/", to, "/", reason);
  prometheus::Counter* counter = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto& slot = transition_counters_[key];
    if (!slot) {
      slot = &transitions_.Add(
          {{"from", StateName(from)}, {"to", StateName(to)}, {"reason", ReasonName(reason)}});
    }
    counter = slot;
  }
  counter->Increment();
}

}  // namespace wasentinel::session
