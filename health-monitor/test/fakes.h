// In-memory stand-ins at the monitor's I/O seams (SessionSource, AlertSink) for tests that
// move hours of fake time; the gRPC tests use the real session-service.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "health/monitor.h"

namespace wasentinel::monitor {

// session-service as a table of sessions; Reconnect and Probe are recorded.
class FakeSessions final : public SessionSource {
 public:
  absl::StatusOr<sv1::GetHealthResponse> Health() override {
    if (!up) return absl::UnavailableError("connection refused");
    sv1::GetHealthResponse r;
    r.mutable_uptime()->set_seconds(3600);
    return r;
  }
  absl::StatusOr<sv1::GetDeepHealthResponse> DeepHealth() override {
    if (!up) return absl::UnavailableError("connection refused");
    sv1::GetDeepHealthResponse r;
    for (const auto& [id, s] : sessions) *r.add_sessions() = s;
    return r;
  }
  absl::StatusOr<std::vector<sv1::Session>> BulkGet(const std::vector<std::string>& ids) override {
    if (bulk_fails || !up) return absl::UnavailableError("session-service is down");
    std::vector<sv1::Session> out;
    for (const auto& id : ids) {
      if (auto it = sessions.find(id); it != sessions.end()) out.push_back(it->second);
    }
    return out;
  }
  absl::StatusOr<sv1::Session> Get(const std::string& id) override {
    if (!up) return absl::UnavailableError("session-service is down");
    auto it = sessions.find(id);
    if (it == sessions.end()) return absl::NotFoundError("no such session");
    return it->second;
  }
  absl::StatusOr<sv1::Session> Reconnect(const std::string& id) override {
    // As session-service answers a recovery (ReconnectRequest.recovery).
    const sv1::SessionState st = sessions[id].state();
    if (st == sv1::SESSION_STATE_LOGGED_OUT || st == sv1::SESSION_STATE_REPLACED ||
        st == sv1::SESSION_STATE_BANNED) {
      refused.push_back(id);
      return absl::FailedPreconditionError("only a person may bring it back");
    }
    reconnects.push_back(id);
    sessions[id].set_state(sv1::SESSION_STATE_CONNECTING);
    return sessions[id];
  }
  absl::StatusOr<absl::Duration> Probe(const std::string& id) override {
    probes.push_back(id);
    if (on_probe) on_probe(id);
    if (!probe_ok) return absl::DeadlineExceededError("no pong within 5s");
    return absl::Milliseconds(40);
  }

  bool up = true;
  bool probe_ok = true;
  bool bulk_fails = false;
  std::function<void(const std::string&)> on_probe;  // e.g. a conflict racing the probe
  std::map<std::string, sv1::Session> sessions;
  std::vector<std::string> reconnects, probes, refused;
};

class RecordingAlerts final : public AlertSink {
 public:
  absl::Status Raise(const av1::RaiseAlertRequest& a) override {
    raised.push_back(a);
    return absl::OkStatus();
  }
  absl::Status Resolve(const std::string& key, const std::string&) override {
    resolved.push_back(key);
    return absl::OkStatus();
  }
  std::vector<std::string> Types() const {
    std::vector<std::string> out;
    for (const auto& a : raised) out.push_back(a.event_type());
    return out;
  }
  std::vector<av1::RaiseAlertRequest> raised;
  std::vector<std::string> resolved;
};

}  // namespace wasentinel::monitor
