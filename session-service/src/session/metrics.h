// session-service's Prometheus metrics (exposed by the App on --metrics_listen, default :9101).
//
//   wasentinel_sessions{state}                              gauge: sessions held by this process
//   wasentinel_session_transitions_total{from,to,reason}    counter: every state change
//   wasentinel_keepalive_rtt_seconds                        histogram: answered pings
//   wasentinel_keepalive_missed_total                       counter: pings without an answer
//   wasentinel_inbound_messages_total                       counter: <message> stanzas acked
//   wasentinel_connect_seconds                              histogram: CONNECTING → CONNECTED
//   wasentinel_session_leases                               gauge: session leases this replica
//   holds wasentinel_session_lease_changes_total{change}          counter: acquired, lost
//   wasentinel_forwarded_calls_total{method}                counter: calls sent to the holder
//                                                           replica
//   wasentinel_watchers_cut_off_total{reason}               counter: watches refused or ended
//                                                           RESOURCE_EXHAUSTED: "behind" (fell
//                                                           more than --watch_buffer events
//                                                           behind), "limit" (a key's
//                                                           --max_watches_per_key reached)
//   wasentinel_prekey_uploads_total{result}                 counter: one-time pre-key batches
//                                                           "uploaded" to WhatsApp, or "failed"
//                                                           (made, stored or answered with an
//                                                           error)
//   wasentinel_messages_received_total{result}             counter: end-to-end encrypted
//                                                           messages: "stored", "duplicate"
//                                                           (delivered again), "undecryptable"
//                                                           (a retry receipt sent), "failed"
//                                                           (not stored: WhatsApp redelivers)
//   wasentinel_messages_sent_total{result}                 counter: messages sent: "sent" (a
//                                                           stanza left), "acked" (the server
//                                                           took it), "failed", "resent" (a
//                                                           retry receipt answered)
//   wasentinel_grpc_calls_total{method,code}, wasentinel_grpc_calls_in_flight{method}
//                                                           (common/grpc_metrics.h; the in-flight
//                                                           WatchSessionEvents are the watchers)
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store.h"

namespace wasentinel::session {

class SessionMetrics {
 public:
  explicit SessionMetrics(prometheus::Registry& registry);

  /// A session of this process moved `from` → `to` (`from` UNSPECIFIED: it appeared).
  void Transition(v1::SessionState from, v1::SessionState to, v1::StateReason reason);
  void KeepaliveAnswered(absl::Duration rtt) { keepalive_rtt_.Observe(absl::ToDoubleSeconds(rtt)); }
  void KeepaliveMissed() { keepalive_missed_.Increment(); }
  void InboundMessage() { inbound_messages_.Increment(); }
  void Connected(absl::Duration took) { connect_seconds_.Observe(absl::ToDoubleSeconds(took)); }
  /// A session in `state` left this process without a transition (its lease went elsewhere).
  void Forgotten(v1::SessionState state);
  void LeasesHeld(int64_t n) { leases_.Set(static_cast<double>(n)); }
  /// `change`: "acquired" or "lost".
  void LeaseChange(const std::string& change) {
    lease_changes_.Add({{"change", change}}).Increment();
  }
  void Forwarded(const std::string& method) { forwarded_.Add({{"method", method}}).Increment(); }
  /// `result`: "uploaded" or "failed".
  void PreKeyUpload(const std::string& result) {
    prekey_uploads_.Add({{"result", result}}).Increment();
  }
  /// `result`: "stored", "duplicate", "undecryptable" or "failed".
  void MessageReceived(const std::string& result) {
    messages_received_.Add({{"result", result}}).Increment();
  }
  /// `result`: "sent", "acked", "failed" or "resent".
  void MessageSent(const std::string& result) {
    messages_sent_.Add({{"result", result}}).Increment();
  }
  /// `reason`: "behind" or "limit".
  void WatcherCutOff(const std::string& reason) {
    watchers_cut_off_.Add({{"reason", reason}}).Increment();
  }

 private:
  prometheus::Family<prometheus::Gauge>& sessions_;
  prometheus::Family<prometheus::Counter>& transitions_;
  prometheus::Histogram& keepalive_rtt_;
  prometheus::Counter& keepalive_missed_;
  prometheus::Counter& inbound_messages_;
  prometheus::Histogram& connect_seconds_;
  prometheus::Gauge& leases_;
  prometheus::Family<prometheus::Counter>& lease_changes_;
  prometheus::Family<prometheus::Counter>& forwarded_;
  prometheus::Family<prometheus::Counter>& watchers_cut_off_;
  prometheus::Family<prometheus::Counter>& prekey_uploads_;
  prometheus::Family<prometheus::Counter>& messages_received_;
  prometheus::Family<prometheus::Counter>& messages_sent_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, prometheus::Counter*> transition_counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wasentinel::session
