// alert-service's Prometheus metrics (exposed by the App on --metrics_listen, default :9103).
//
// clang-format off
//   wasentinel_alert_deliveries_total{channel,result}      counter: attempts by result
//                                                          (sent | retry | dead)
//   wasentinel_alert_delivery_latency_seconds{channel}     histogram: created → sent
//   wasentinel_alert_outbox_depth                          gauge: deliveries PENDING or FAILED
//   wasentinel_alert_outbox_oldest_pending_seconds         gauge: age of the oldest of them
//   wasentinel_alert_alerts_total{event_type,outcome}      counter: raises (created | folded |
//                                                          escalated | suppressed)
//   wasentinel_alert_message_events_total{type}            counter: message events read from
//                                                          session-service (feed/message_feed.h)
//   wasentinel_alert_message_deliveries_total{type}        counter: their deliveries enqueued
//   wasentinel_alert_message_feed_following                gauge: 1 on the replica following
//   wasentinel_alert_message_events_skipped_total          counter: messages refused three
//                                                          times by the outbox, passed over
// clang-format on
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

#include "absl/time/time.h"

namespace wasentinel::alert {

class AlertMetrics {
 public:
  explicit AlertMetrics(prometheus::Registry& registry);

  /// `channel`: "email" | "webhook"; `result`: "sent" | "retry" | "dead"; `latency`: created →
  /// sent, for "sent".
  void Attempt(const std::string& channel, const std::string& result, absl::Duration latency);
  void Outbox(int64_t depth, absl::Duration oldest);
  /// `outcome`: "created" | "folded" | "escalated" | "suppressed".
  void Raised(const std::string& event_type, const std::string& outcome);
  /// A message event of `type` ("message.received" | "message.status") and the `deliveries`
  /// it caused.
  void MessageEvent(const std::string& type, int deliveries);
  void Following(bool following);
  void MessageSkipped();

 private:
  /// The latency histogram of one channel, with the buckets every channel shares.
  prometheus::Histogram& Latency(const std::string& channel);
  prometheus::Family<prometheus::Counter>& deliveries_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Gauge& depth_;
  prometheus::Gauge& oldest_;
  prometheus::Family<prometheus::Counter>& alerts_;
  prometheus::Family<prometheus::Counter>& message_events_;
  prometheus::Family<prometheus::Counter>& message_deliveries_;
  prometheus::Gauge& following_;
  prometheus::Counter& skipped_;
};

}  // namespace wasentinel::alert
