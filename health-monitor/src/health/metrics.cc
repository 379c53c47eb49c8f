#include "metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "wasentinel/common/event_types.h"

namespace wasentinel::monitor {
namespace {

const prometheus::Histogram::BucketBoundaries kScoreBuckets = {10, 20, 30, 40, 50,
                                                               60, 70, 80, 90, 100};

std::string LevelLabel(int level) {
  std::string n = v1::HealthLevel_Name(static_cast<v1::HealthLevel>(level));
  if (absl::StartsWith(n, "HEALTH_LEVEL_")) n = n.substr(13);
  return absl::AsciiStrToLower(n);
}

}  // namespace

MonitorMetrics::MonitorMetrics(prometheus::Registry& registry)
    : sessions_(prometheus::BuildGauge()
                    .Name("wasentinel_monitor_sessions")
                    .Help("Watched sessions by health level")
                    .Register(registry)),
      manual_(prometheus::BuildGauge()
                  .Name("wasentinel_monitor_manual_intervention")
                  .Help("Sessions flagged manual_intervention_required")
                  .Register(registry)
                  .Add({})),
      phones_(prometheus::BuildGauge()
                  .Name("wasentinel_monitor_phones_inactive")
                  .Help("Sessions whose phone has not been seen for "
                        "--phone_inactive_warning_after (severity=warning, not yet critical) or "
                        "--phone_inactive_critical_after (severity=critical)")
                  .Register(registry)),
      score_family_(prometheus::BuildHistogram()
                        .Name("wasentinel_monitor_session_score")
                        .Help("Health scores (0-100) of the watched sessions at the last check")
                        .Register(registry)),
      recoveries_(prometheus::BuildCounter()
                      .Name("wasentinel_monitor_recoveries_total")
                      .Help("Recovery attempts by action and outcome")
                      .Register(registry)),
      checks_(prometheus::BuildHistogram()
                  .Name("wasentinel_monitor_check_duration_seconds")
                  .Help("Duration of the light and deep checks")
                  .Register(registry)),
      jobs_(prometheus::BuildCounter()
                .Name("wasentinel_monitor_job_runs_total")
                .Help("Scheduled and triggered job runs by result")
                .Register(registry)),
      alerts_(prometheus::BuildCounter()
                  .Name("wasentinel_monitor_alerts_total")
                  .Help("Alerts raised and resolved at alert-service")
                  .Register(registry)),
      events_(prometheus::BuildCounter()
                  .Name("wasentinel_monitor_events_total")
                  .Help("Session events handled")
                  .Register(registry)
                  .Add({})),
      event_lag_(prometheus::BuildHistogram()
                     .Name("wasentinel_monitor_event_lag_seconds")
                     .Help("From session-service writing an event to the monitor classifying it")
                     .Register(registry)
                     .Add({}, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1,
                                                                      0.25, 0.5, 1, 2.5, 5})),
      leader_(prometheus::BuildGauge()
                  .Name("wasentinel_monitor_leader")
                  .Help("1 while this replica is the leader")
                  .Register(registry)
                  .Add({})),
      session_service_up_(prometheus::BuildGauge()
                              .Name("wasentinel_monitor_session_service_up")
                              .Help("1 while session-service answers the light check")
                              .Register(registry)
                              .Add({})) {
  for (int level = 1; level <= 4; ++level) sessions_.Add({{"level", LevelLabel(level)}});
  // Every series a dashboard or rule queries exists from the start, at 0, so that rate() and
  // increase() count its first event too.
  for (const char* action : {"reconnect", "probe"}) {
    for (const char* outcome : {"started", "succeeded", "failed"}) {
      recoveries_.Add({{"action", action}, {"outcome", outcome}});
    }
  }
  for (const char* event_type : event_types::kAll) {
    for (const char* action : {"raised", "resolved"}) {
      alerts_.Add({{"event_type", event_type}, {"action", action}});
    }
  }
  absl::MutexLock lock(&mu_);
  score_ = &score_family_.Add({}, kScoreBuckets);
}

void MonitorMetrics::Snapshot(const std::array<int64_t, 5>& by_level, int64_t manual_intervention,
                              const std::vector<int>& scores) {
  for (int level = 1; level <= 4; ++level) {
    sessions_.Add({{"level", LevelLabel(level)}}).Set(static_cast<double>(by_level[level]));
  }
  manual_.Set(static_cast<double>(manual_intervention));
  // A histogram of the current scores: the previous snapshot is replaced, not added to.
  std::vector<double> buckets(kScoreBuckets.size() + 1, 0);
  double sum = 0;
  for (int score : scores) {
    size_t i = 0;
    while (i < kScoreBuckets.size() && score > kScoreBuckets[i]) ++i;
    buckets[i] += 1;
    sum += score;
  }
  absl::MutexLock lock(&mu_);
  score_family_.Remove(score_);
  score_ = &score_family_.Add({}, kScoreBuckets);
  score_->ObserveMultiple(buckets, sum);
}

void MonitorMetrics::Recovery(const std::string& action, const std::string& outcome) {
  recoveries_.Add({{"action", action}, {"outcome", outcome}}).Increment();
}

void MonitorMetrics::Check(const std::string& check, absl::Duration took) {
  checks_
      .Add({{"check", check}}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05,
                                                                       0.1, 0.25, 0.5, 1, 2, 5, 10})
      .Observe(absl::ToDoubleSeconds(took));
}

void MonitorMetrics::JobRun(const std::string& job, bool ok) {
  jobs_.Add({{"job", job}, {"result", ok ? "ok" : "error"}}).Increment();
}

void MonitorMetrics::Alert(const std::string& event_type, const std::string& action) {
  alerts_.Add({{"event_type", event_type}, {"action", action}}).Increment();
}

void MonitorMetrics::Event(absl::Duration lag) {
  events_.Increment();
  event_lag_.Observe(absl::ToDoubleSeconds(std::max(lag, absl::ZeroDuration())));
}

}  // namespace wasentinel::monitor
