// The session state machine and the owner of every WhatsApp connection of this process.
//
// Source: shared/docs/architecture.md "Session state machine" (causes → next state → action),
// seed 001 §1 (start-up restore with stagger and 5/15/45 s retries), seed 004 (restore on a
// status query), seed 000 task 6 (shutdown writes DISCONNECTED).
//
// Threading: connections and runtime state live on one io_context thread (`io`). The public
// methods are called from gRPC threads: store reads happen on the caller's thread; runtime
// changes are posted to the io thread and awaited. Transitions are persisted in order by the
// TransitionWriter and published to watchers after they are stored.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "connection.h"
#include "metrics.h"
#include "store.h"
#include "transition_writer.h"
#include "wasentinel/common/backoff.h"
#include "wasentinel/common/sealing.h"

namespace wasentinel::session {

struct ManagerOptions {
  wa::ConnectionOptions connection;
  /// Delays before retries 1, 2, 3 after a drop (architecture.md: 5 s, 15 s, 45 s).
  std::vector<absl::Duration> backoff = {absl::Seconds(5), absl::Seconds(15), absl::Seconds(45)};
  double backoff_jitter = 0.2;
  /// Start-up restore pace: connects per second (0: no limit), each delay jittered ±50 %.
  double restore_per_second = 20;
};

/// What this process knows live about a session, beyond its stored row.
struct LiveInfo {
  v1::SessionState state = v1::SESSION_STATE_UNSPECIFIED;
  v1::StateReason reason = v1::STATE_REASON_UNSPECIFIED;
  std::string last_error;
  bool socket_alive = false;
  int64_t inbound_messages = 0;
  std::optional<absl::Time> last_inbound_at;
  std::optional<absl::Time> last_pong_at;
  std::optional<absl::Duration> keepalive_rtt;
  bool retry_pending = false;
};

struct SessionView {
  SessionRecord record;
  std::optional<LiveInfo> live;  ///< absent when this process holds no runtime for it
};

struct NewSession {
  std::string tenant_id;
  std::string session_name = "primary";
  std::string account_name;
  std::string owner_email;
  bool auto_connect = true;
  std::string creds_json;
};

class SessionManager {
 public:
  SessionManager(boost::asio::io_context& io, boost::asio::ssl::context& tls, SessionStore& store,
                 const Sealer& sealer, TransitionWriter& writer, ManagerOptions options,
                 std::shared_ptr<spdlog::logger> log, SessionMetrics* metrics = nullptr);
  ~SessionManager();

  /// Validates and seals the creds.json, stores the session, connects it when auto_connect.
  /// INVALID_ARGUMENT (bad creds.json), ALREADY_EXISTS (tenant + session_name taken).
  absl::StatusOr<SessionView> Create(const NewSession& request);
  /// The stored session with its live state. A session with credentials, active, auto-connect,
  /// not ended by WhatsApp (logged out, replaced, banned) or by a user, and with no socket here
  /// is restored on the spot and answered CONNECTING (seed 004).
  absl::StatusOr<SessionView> Get(const std::string& id);
  /// Connect: idempotent. FAILED_PRECONDITION without credentials.
  absl::StatusOr<SessionView> Connect(const std::string& id);
  /// Disconnect: idempotent; DISCONNECTED with reason USER.
  absl::StatusOr<SessionView> Disconnect(const std::string& id);
  /// Live overlay for many sessions at once (absent ids have no runtime here).
  std::vector<std::optional<LiveInfo>> LiveInfos(const std::vector<std::string>& ids);

  /// Start-up: sessions stored as live that will not be restored become DISCONNECTED
  /// (SERVICE_RESTART); restorable ones are connected at `restore_per_second`.
  absl::Status RestoreAll();

  /// Closes every connection (presence unavailable, clean close) and records DISCONNECTED /
  /// SHUTDOWN for each live session; connections still open at `deadline` are aborted.
  void Shutdown(absl::Time deadline);

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
  SessionStore& store_;
  const Sealer& sealer_;
};

}  // namespace wasentinel::session
