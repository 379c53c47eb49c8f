#include "jobs.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"

namespace wasentinel::monitor {

absl::Time NextDailyUtc(absl::Time now, int hour, int minute) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const absl::CivilDay today = absl::ToCivilDay(now, utc);
  absl::Time at = absl::FromCivil(absl::CivilMinute(today) + hour * 60 + minute, utc);
  if (at <= now) at = absl::FromCivil(absl::CivilMinute(today + 1) + hour * 60 + minute, utc);
  return at;
}

JobScheduler::JobScheduler(Clock& clock, HealthStore& store, std::vector<JobSpec> jobs,
                           std::shared_ptr<spdlog::logger> log,
                           std::function<void(const std::string&, const v1::JobResult&)> on_run)
    : clock_(clock), store_(store), log_(std::move(log)), on_run_(std::move(on_run)) {
  const absl::Time now = clock_.Now();
  for (auto& spec : jobs) {
    Entry e;
    e.record.name = spec.name;
    e.due = spec.next_due(now);
    e.spec = std::move(spec);
    jobs_.push_back(std::move(e));
  }
}

absl::Status JobScheduler::Load() {
  auto stored = store_.Jobs();
  if (!stored.ok()) return stored.status();
  absl::MutexLock lock(&mu_);
  for (const auto& r : *stored) {
    if (Entry* e = Find(r.name)) e->record = r;
  }
  const absl::Time now = clock_.Now();
  for (auto& e : jobs_) e.due = e.spec.run_at_load ? now : e.spec.next_due(now);
  return absl::OkStatus();
}

JobScheduler::Entry* JobScheduler::Find(const std::string& name) {
  for (auto& e : jobs_) {
    if (e.spec.name == name) return &e;
  }
  return nullptr;
}

absl::Time JobScheduler::NextDue() const {
  absl::ReaderMutexLock lock(&mu_);
  absl::Time next = absl::InfiniteFuture();
  for (const auto& e : jobs_) {
    if (!e.record.paused) next = std::min(next, e.due);
  }
  return next;
}

v1::JobResult JobScheduler::Run(Entry& e) {
  e.running = true;
  mu_.Unlock();
  const absl::Time started = clock_.Now();
  const absl::Time wall = absl::Now();
  v1::JobResult result = e.spec.run();
  if (!result.has_took()) *result.mutable_took() = wasentinel::ToProto(absl::Now() - wall);
  if (on_run_) on_run_(e.spec.name, result);
  mu_.Lock();
  e.running = false;
  const absl::Time now = clock_.Now();
  ++e.record.runs;
  if (!result.error().empty()) ++e.record.failures;
  e.record.last_run_at = started;
  e.record.last_result = result;
  const std::string last_error = std::exchange(e.last_error, result.error());
  e.due = e.spec.next_due(now);
  if (auto st = store_.SaveJob(e.record); !st.ok()) {
    log_->warn("recording the run of job {}: {}", e.spec.name, st);
  }
  if (!result.error().empty()) {
    // A failure repeating the last one (session-service down) is logged once, then at debug.
    if (result.error() != last_error) {
      log_->warn("job {} failed: {}", e.spec.name, result.error());
    } else {
      log_->debug("job {} failed again: {}", e.spec.name, result.error());
    }
  } else {
    if (!last_error.empty()) log_->info("job {} works again", e.spec.name);
    log_->debug(
        "job {}: {} sessions, {} healthy, {} warning, {} critical, {} reconnected, {} "
        "notified",
        e.spec.name, result.total(), result.healthy(), result.warning(), result.critical(),
        result.reconnected(), result.notified());
  }
  return result;
}

void JobScheduler::RunDue() {
  absl::MutexLock run(&run_mu_);
  absl::MutexLock lock(&mu_);
  for (auto& e : jobs_) {
    if (!e.record.paused && e.due <= clock_.Now()) Run(e);
  }
}

absl::StatusOr<v1::JobResult> JobScheduler::Trigger(const std::string& name) {
  absl::MutexLock run(&run_mu_);
  absl::MutexLock lock(&mu_);
  Entry* e = Find(name);
  if (!e) return absl::NotFoundError(absl::StrCat("no job named '", name, "'"));
  if (e->record.paused) {
    return absl::FailedPreconditionError(absl::StrCat("job ", name, " is paused; resume it first"));
  }
  log_->info("job {} triggered by hand", name);
  return Run(*e);
}

absl::StatusOr<v1::Job> JobScheduler::Pause(const std::string& name) {
  absl::MutexLock lock(&mu_);
  Entry* e = Find(name);
  if (!e) return absl::NotFoundError(absl::StrCat("no job named '", name, "'"));
  if (!e->record.paused) {
    e->record.paused = true;
    if (auto st = store_.SaveJob(e->record); !st.ok()) return st;
    log_->info("job {} paused", name);
  }
  return ToProto(*e);
}

absl::StatusOr<v1::Job> JobScheduler::Resume(const std::string& name) {
  absl::MutexLock lock(&mu_);
  Entry* e = Find(name);
  if (!e) return absl::NotFoundError(absl::StrCat("no job named '", name, "'"));
  if (e->record.paused) {
    e->record.paused = false;
    if (auto st = store_.SaveJob(e->record); !st.ok()) return st;
    e->due = e->spec.next_due(clock_.Now());
    log_->info("job {} resumed", name);
  }
  return ToProto(*e);
}

v1::Job JobScheduler::ToProto(const Entry& e) const {
  v1::Job j;
  j.set_name(e.spec.name);
  j.set_schedule(e.spec.schedule);
  j.set_paused(e.record.paused);
  j.set_running(e.running);
  if (e.record.last_run_at) *j.mutable_last_run_at() = wasentinel::ToProto(*e.record.last_run_at);
  if (!e.record.paused) *j.mutable_next_run_at() = wasentinel::ToProto(e.due);
  *j.mutable_last_result() = e.record.last_result;
  j.set_runs(e.record.runs);
  j.set_failures(e.record.failures);
  return j;
}

std::vector<v1::Job> JobScheduler::List() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<v1::Job> out;
  for (const auto& e : jobs_) out.push_back(ToProto(e));
  return out;
}

}  // namespace wasentinel::monitor
