// The health-monitor's Prometheus metrics (exposed by the App on --metrics_listen, default
// :9102); README "Metrics" lists them for operators. Sessions by level, scores, recoveries,
// checks, jobs and phones say how the sessions fare; the rest whether the monitor itself works.
//
// clang-format off
//   wasentinel_monitor_sessions{level}                     gauge: watched sessions by level
//   wasentinel_monitor_manual_intervention                 gauge: sessions needing a person
//   wasentinel_monitor_phones_inactive{severity}           gauge: phones unseen past a window
//   wasentinel_monitor_session_score                       histogram: every watched session's
//                                                          score at the last check (a snapshot,
//                                                          replaced at each check)
//   wasentinel_monitor_recoveries_total{action,outcome}    counter: reconnects and probes
//   wasentinel_monitor_check_duration_seconds{check}       histogram: light and deep checks
//   wasentinel_monitor_job_runs_total{job,result}          counter: result ok | error
//   wasentinel_monitor_alerts_total{event_type,action}     counter: action raised | resolved
//   wasentinel_monitor_events_total                        counter: session events handled
//   wasentinel_monitor_event_lag_seconds                   histogram: event written by
//                                                          session-service → classified here
//   wasentinel_monitor_leader                              gauge: 1 while this replica leads
//   wasentinel_monitor_session_service_up                  gauge: 1 while session-service answers
// clang-format on
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wasentinel/monitor/v1/monitor.pb.h"

namespace wasentinel::monitor {

class MonitorMetrics {
 public:
  explicit MonitorMetrics(prometheus::Registry& registry);

  /// The levels and scores of every watched session, after a check: replaces the previous
  /// snapshot. `by_level` is indexed by HealthLevel; `scores` are 0..100.
  void Snapshot(const std::array<int64_t, 5>& by_level, int64_t manual_intervention,
                const std::vector<int>& scores);
  /// `action`: "reconnect" | "probe"; `outcome`: "started" | "succeeded" | "failed".
  void Recovery(const std::string& action, const std::string& outcome);
  /// `check`: "light" | "deep".
  void Check(const std::string& check, absl::Duration took);
  void JobRun(const std::string& job, bool ok);
  /// `action`: "raised" | "resolved".
  void Alert(const std::string& event_type, const std::string& action);
  /// An event handled `lag` after session-service wrote it.
  void Event(absl::Duration lag);
  void Leader(bool leader) { leader_.Set(leader ? 1 : 0); }
  /// Sessions whose phone was last seen past the warning / critical window.
  void PhonesInactive(int64_t warning, int64_t critical) {
    phones_.Add({{"severity", "warning"}}).Set(static_cast<double>(warning));
    phones_.Add({{"severity", "critical"}}).Set(static_cast<double>(critical));
  }
  void SessionServiceUp(bool up) { session_service_up_.Set(up ? 1 : 0); }

 private:
  prometheus::Family<prometheus::Gauge>& sessions_;
  prometheus::Gauge& manual_;
  prometheus::Family<prometheus::Gauge>& phones_;
  prometheus::Family<prometheus::Histogram>& score_family_;
  prometheus::Family<prometheus::Counter>& recoveries_;
  prometheus::Family<prometheus::Histogram>& checks_;
  prometheus::Family<prometheus::Counter>& jobs_;
  prometheus::Family<prometheus::Counter>& alerts_;
  prometheus::Counter& events_;
  prometheus::Histogram& event_lag_;
  prometheus::Gauge& leader_;
  prometheus::Gauge& session_service_up_;
  absl::Mutex mu_;
  prometheus::Histogram* score_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace wasentinel::monitor
