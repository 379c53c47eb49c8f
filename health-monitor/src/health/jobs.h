// The monitor's scheduled jobs (docs/api.md "MonitorService"; README "Architecture" › "Health",
// Jobs): each has a schedule (when it is next due, given the time), a body that
// answers a JobResult, and can be paused, resumed and triggered by hand. Paused flags and run
// counts are kept in the store, so they survive a restart.
//
// Time comes from the Clock: a test moves a FakeClock and calls RunDue(). Thread-safe: the
// runner thread calls RunDue() while gRPC threads list, trigger, pause and resume; runs never
// overlap.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "store.h"
#include "wasentinel/common/clock.h"

namespace spdlog {
class logger;
}

namespace wasentinel::monitor {

struct JobSpec {
  std::string name;
  std::string schedule;  ///< in words, for ListJobs ("every 30s", "daily at 00:00 UTC")
  /// When the job is next due after a run that ended at `now` (and at start-up).
  std::function<absl::Time(absl::Time now)> next_due;
  std::function<v1::JobResult()> run;
  /// Due at once on Load() (a new leader checks before it trusts what it loaded).
  bool run_at_load = false;
};

/// The next time-of-day `hour`:`minute` UTC strictly after `now`.
absl::Time NextDailyUtc(absl::Time now, int hour, int minute);

class JobScheduler {
 public:
  /// `on_run` (optional) hears of every run as it ends, e.g. for metrics.
  JobScheduler(Clock& clock, HealthStore& store, std::vector<JobSpec> jobs,
               std::shared_ptr<spdlog::logger> log,
               std::function<void(const std::string& job, const v1::JobResult&)> on_run = {});

  /// Paused flags and counters from the store; every job scheduled from now (run_at_load jobs:
  /// due now).
  absl::Status Load();
  /// The earliest time an unpaused job is due (InfiniteFuture when all are paused).
  absl::Time NextDue() const;
  /// Runs every unpaused job that is due now, in order, and schedules each again.
  void RunDue();
  /// Runs `name` now (even when not due) and answers its result. NOT_FOUND for an unknown job;
  /// FAILED_PRECONDITION while it is paused.
  absl::StatusOr<v1::JobResult> Trigger(const std::string& name);
  absl::StatusOr<v1::Job> Pause(const std::string& name);
  absl::StatusOr<v1::Job> Resume(const std::string& name);
  std::vector<v1::Job> List() const;

 private:
  struct Entry {
    JobSpec spec;
    JobRecord record;
    absl::Time due;
    bool running = false;
    std::string last_error;  // of the last run (empty: it worked)
  };
  Entry* Find(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Job ToProto(const Entry& e) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Runs `e` (mu_ held on entry and exit; released while the body runs).
  v1::JobResult Run(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock& clock_;
  HealthStore& store_;
  std::shared_ptr<spdlog::logger> log_;
  const std::function<void(const std::string&, const v1::JobResult&)> on_run_;
  absl::Mutex run_mu_;  // one run at a time
  mutable absl::Mutex mu_;
  std::vector<Entry> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wasentinel::monitor
