#include "metrics.h"

#include "wasentinel/common/event_types.h"

namespace wasentinel::alert {

AlertMetrics::AlertMetrics(prometheus::Registry& registry)
    : deliveries_(prometheus::BuildCounter()
                      .Name("wasentinel_alert_deliveries_total")
                      .Help("Delivery attempts by channel and result")
                      .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("wasentinel_alert_delivery_latency_seconds")
                   .Help("From a delivery's creation (the alert raised) to it being sent")
                   .Register(registry)),
      depth_(prometheus::BuildGauge()
                 .Name("wasentinel_alert_outbox_depth")
                 .Help("Deliveries waiting: PENDING or FAILED")
                 .Register(registry)
                 .Add({})),
      oldest_(prometheus::BuildGauge()
                  .Name("wasentinel_alert_outbox_oldest_pending_seconds")
                  .Help("Age of the oldest delivery waiting")
                  .Register(registry)
                  .Add({})),
      alerts_(prometheus::BuildCounter()
                  .Name("wasentinel_alert_alerts_total")
                  .Help("RaiseAlert calls by event type and outcome")
                  .Register(registry)),
      message_events_(prometheus::BuildCounter()
                          .Name("wasentinel_alert_message_events_total")
                          .Help("Message events read from session-service, by type")
                          .Register(registry)),
      message_deliveries_(prometheus::BuildCounter()
                              .Name("wasentinel_alert_message_deliveries_total")
                              .Help("Webhook deliveries of message events enqueued, by type")
                              .Register(registry)),
      following_(prometheus::BuildGauge()
                     .Name("wasentinel_alert_message_feed_following")
                     .Help("1 while this replica follows session-service's messages")
                     .Register(registry)
                     .Add({})),
      skipped_(prometheus::BuildCounter()
                   .Name("wasentinel_alert_message_events_skipped_total")
                   .Help("Messages the outbox refused three times, passed over without event")
                   .Register(registry)
                   .Add({})) {
  // Every series the alert rules and the dashboard query exists from the start, at 0, so that
  // increase() counts the first dead letter after a restart too.
  for (const char* channel : {"email", "webhook"}) {
    for (const char* result : {"sent", "retry", "deferred", "dead"}) {
      deliveries_.Add({{"channel", channel}, {"result", result}});
    }
    Latency(channel);
  }
  for (const char* type : event_types::kFeedEvents) {
    message_events_.Add({{"type", type}});
    message_deliveries_.Add({{"type", type}});
  }
}

prometheus::Histogram& AlertMetrics::Latency(const std::string& channel) {
  return latency_.Add({{"channel", channel}},
                      prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                              0.5, 1, 5, 30, 300});
}

void AlertMetrics::Attempt(const std::string& channel, const std::string& result,
                           absl::Duration latency) {
  deliveries_.Add({{"channel", channel}, {"result", result}}).Increment();
  if (result == "sent") Latency(channel).Observe(absl::ToDoubleSeconds(latency));
}

void AlertMetrics::Outbox(int64_t depth, absl::Duration oldest) {
  depth_.Set(static_cast<double>(depth));
  oldest_.Set(absl::ToDoubleSeconds(oldest));
}

void AlertMetrics::Raised(const std::string& event_type, const std::string& outcome) {
  alerts_.Add({{"event_type", event_types::MetricLabel(event_type)}, {"outcome", outcome}})
      .Increment();
}

}  // namespace wasentinel::alert

namespace wasentinel::alert {

void AlertMetrics::MessageEvent(const std::string& type, int deliveries) {
  message_events_.Add({{"type", type}}).Increment();
  message_deliveries_.Add({{"type", type}}).Increment(deliveries);
}

void AlertMetrics::Following(bool following) { following_.Set(following ? 1 : 0); }

void AlertMetrics::MessageSkipped() { skipped_.Increment(); }

}  // namespace wasentinel::alert
