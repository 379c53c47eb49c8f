#include "manager.h"

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cassert>
#include <chrono>
#include <future>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "credentials.h"
#include "pg_store.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {
namespace {

namespace asio = boost::asio;

bool IsTerminal(v1::SessionState s) {
  return s == v1::SESSION_STATE_LOGGED_OUT || s == v1::SESSION_STATE_REPLACED ||
         s == v1::SESSION_STATE_BANNED;
}

// Should a session in this state be (re)connected when nobody asked for it: restored on a
// status query (RESTORE_ON_DEMAND) or taken over from a replica that died? Not when WhatsApp
// ended it (logged out, replaced, banned) or a person or the retry schedule did.
bool WantsSocket(const SessionRecord& rec, v1::SessionState state, v1::StateReason reason) {
  return rec.is_active && rec.auto_connect && !IsTerminal(state) &&
         reason != v1::STATE_REASON_USER && reason != v1::STATE_REASON_RETRIES_EXHAUSTED &&
         reason != v1::STATE_REASON_CLIENT_OUTDATED && reason != v1::STATE_REASON_LOGIN_REFUSED;
}

// A temporary ban with a known end: the session wants its socket back then.
bool BanEnds(const SessionRecord& rec, v1::SessionState state) {
  return state == v1::SESSION_STATE_BANNED && rec.ban_expires_at.has_value() && rec.is_active &&
         rec.auto_connect;
}

constexpr char kOwnerPayload[] = "type.wasentinel/owner";

// UNAVAILABLE naming the replica that holds session `id` (OwnerOf reads it back).
absl::Status HeldElsewhere(const std::string& id, const std::string& owner) {
  absl::Status st = absl::UnavailableError(
      absl::StrCat("session ", id, " is held by replica ", owner, "; call that replica"));
  st.SetPayload(kOwnerPayload, absl::Cord(owner));
  return st;
}

using SteadyClock = std::chrono::steady_clock;

v1::StateReason ReasonOf(wa::CloseCause cause) {
  switch (cause) {
    case wa::CloseCause::kClosedByUs:
      return v1::STATE_REASON_USER;
    case wa::CloseCause::kConnectFailed:
      return v1::STATE_REASON_CONNECT_FAILED;
    case wa::CloseCause::kHandshakeFailed:
      return v1::STATE_REASON_HANDSHAKE_FAILED;
    case wa::CloseCause::kSocketClosed:
      return v1::STATE_REASON_SOCKET_CLOSED;
    case wa::CloseCause::kKeepaliveTimeout:
      return v1::STATE_REASON_KEEPALIVE_TIMEOUT;
    case wa::CloseCause::kRestartRequired:
      return v1::STATE_REASON_RESTART_REQUIRED;
    case wa::CloseCause::kLoggedOut:
      return v1::STATE_REASON_LOGGED_OUT;
    case wa::CloseCause::kReplaced:
      return v1::STATE_REASON_REPLACED;
    case wa::CloseCause::kTemporaryBan:
      return v1::STATE_REASON_BANNED;
    case wa::CloseCause::kClientOutdated:
      return v1::STATE_REASON_CLIENT_OUTDATED;
    case wa::CloseCause::kServerError:
      return v1::STATE_REASON_SERVER_ERROR;
    case wa::CloseCause::kLoginRefused:
      return v1::STATE_REASON_LOGIN_REFUSED;
    case wa::CloseCause::kProtocolError:
      return v1::STATE_REASON_PROTOCOL_ERROR;
    case wa::CloseCause::kPairingTimeout:
      return v1::STATE_REASON_PAIRING_TIMEOUT;
    case wa::CloseCause::kPairingRejected:
      return v1::STATE_REASON_PAIRING_REJECTED;
  }
  return v1::STATE_REASON_UNSPECIFIED;
}

std::optional<absl::Time> MillisToTime(int64_t ms) {
  if (ms <= 0) return std::nullopt;
  return absl::FromUnixMillis(ms);
}

using Failure = v1::PairingUpdate::Failure;

// How long WhatsApp has to answer remove-companion-device.
constexpr absl::Duration kLogoutIqTimeout = absl::Seconds(10);

// Connect and Reconnect refuse an inactive session.
absl::Status CheckActive(const SessionRecord& rec) {
  if (rec.is_active) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("session ", rec.id, " is inactive; set is_active with UpdateSession first"));
}

PairingFeed::Update FailureUpdate(Failure::Reason reason, std::string message) {
  PairingFeed::Update u;
  u.kind = PairingFeed::Update::Kind::kFailure;
  u.reason = reason;
  u.message = std::move(message);
  return u;
}

// Waits for a value set on another thread.
template <class T>
struct Promised {
  std::shared_ptr<std::promise<T>> promise = std::make_shared<std::promise<T>>();
  std::future<T> future = promise->get_future();
};

}  // namespace

std::optional<std::string> OwnerOf(const absl::Status& status) {
  auto owner = status.GetPayload(kOwnerPayload);
  if (!owner) return std::nullopt;
  return std::string(*owner);
}

void PairingFeed::Push(Update update) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(update));
}

std::optional<PairingFeed::Update> PairingFeed::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty(); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return std::nullopt;
  Update u = std::move(queue_.front());
  queue_.pop_front();
  return u;
}

class SessionManager::Impl : public std::enable_shared_from_this<SessionManager::Impl> {
 public:
  Impl(asio::io_context& io, asio::ssl::context& tls, SessionStore& store, const Sealer& sealer,
       TransitionWriter& writer, ManagerOptions options, std::shared_ptr<spdlog::logger> log,
       SessionMetrics* metrics)
      : metrics_(metrics),
        io_(io),
        tls_(tls),
        store_(store),
        sealer_(sealer),
        writer_(writer),
        options_(std::move(options)),
        backoff_(options_.backoff, options_.backoff_jitter),
        log_(std::move(log)),
        rng_(std::random_device{}()) {}

  // Runs `fn` on the io thread and waits for its result. Never call it from the io thread.
  template <class F>
  auto OnIo(F fn) -> decltype(fn()) {
    assert(!io_.get_executor().running_in_this_thread());
    auto task = std::make_shared<std::packaged_task<decltype(fn())()>>(std::move(fn));
    auto result = task->get_future();
    // The handler owns the task: a handler destroyed unrun breaks the promise (an exception
    // here) instead of leaving the caller waiting forever.
    asio::post(io_, [this, task] {
      Touch();
      (*task)();
    });
    return result.get();
  }

  // ---- GetSession's read cache: a held session answered without the io thread ----
  //
  // Every io-thread task that may change a runtime calls Touch() before it does; a cached view
  // is served only while the epoch it was taken at is current, so it is exactly what the io
  // thread would answer now. The keepalive facts, which change without a task, are read from
  // the connection's atomics when served. Tasks that change runtimes are rare in the steady
  // state (state changes), so reads mostly hit.

  // Any thread.
  void Touch() { epoch_.fetch_add(1, std::memory_order_seq_cst); }
  Impl& Touched() {
    Touch();
    return *this;
  }

  // A gRPC thread: the view of a held session, when the cache has a current one.
  std::optional<SessionView> CachedView(const std::string& id) {
    absl::ReaderMutexLock lock(&views_mu_);
    auto it = views_.find(id);
    if (it == views_.end() || it->second.epoch != epoch_.load(std::memory_order_seq_cst)) {
      return std::nullopt;
    }
    SessionView view = it->second.view;
    if (it->second.conn) OverlayStats(*view.live, *it->second.conn);
    return view;
  }

  // io thread: remembers `view` of held session `id` as of the current epoch.
  void CacheView(const std::string& id, const SessionView& view) {
    auto rt = sessions_.find(id);
    if (rt == sessions_.end()) return;
    absl::MutexLock lock(&views_mu_);
    if (views_.size() > 2 * sessions_.size() + 1024) views_.clear();  // forgotten sessions
    views_[id] = CachedEntry{epoch_.load(std::memory_order_seq_cst), view, rt->second.conn};
  }

  // ---- everything below runs on the io thread ----

  // A session held here: the live view from memory (every change of a held session passes
  // through this replica), restored on the spot if it should be (RESTORE_ON_DEMAND). nullopt
  // when it is not held here.
  std::optional<SessionView> HeldView(const std::string& id) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return std::nullopt;
    Runtime& rt = it->second;
    const bool open_creds = !rt.creds && rt.record.credentials;
    if (open_creds || (WantsRestore(rt) && !stopping_)) Touch();  // it changes the runtime
    if (open_creds) (void)Ensure(rt.record);
    if (WantsRestore(rt) && !stopping_) {
      (void)ConnectNow(rt, v1::STATE_REASON_RESTORE_ON_DEMAND, false);
    }
    return SessionView{rt.record, Live(rt)};
  }

  struct Runtime {
    SessionRecord record;
    v1::SessionState state = v1::SESSION_STATE_DISCONNECTED;
    v1::StateReason reason = v1::STATE_REASON_UNSPECIFIED;
    std::string last_error;
    std::optional<wa::DeviceCredentials> creds;
    std::shared_ptr<wa::Connection> conn;
    uint64_t generation = 0;
    int64_t lease_token = 0;  // this replica's fencing token for the session
    bool logged_in = false;
    int attempt = 0;  // retries used since the last successful login
    absl::Time connecting_since;
    std::unique_ptr<asio::steady_timer> retry_timer;
    wa::WaVersion version;            // announced by the current (or last) connection
    bool version_retried = false;     // a 405 already led to one more login with a newer version
    bool awaiting_version = false;    // after a 405: the version keeper is asked for a newer one
    bool phone_seen_unsaved = false;  // record.phone_last_seen_at is newer than the stored one
    std::shared_ptr<PairingFeed> pairing;  // a StartPairing stream waits for the outcome
    std::string pairing_phone;             // pairing by code for this number (empty: by QR code)
  };

  class Observer final : public wa::ConnectionObserver {
   public:
    Observer(std::weak_ptr<Impl> impl, std::string id, uint64_t generation)
        : impl_(std::move(impl)), id_(std::move(id)), generation_(generation) {}
    void OnLoggedIn(const wa::LoginInfo& info) override {
      if (auto impl = impl_.lock()) impl->Touched().OnLoggedIn(id_, generation_, info);
    }
    void OnClosed(const wa::CloseInfo& info) override {
      if (auto impl = impl_.lock()) impl->Touched().OnClosed(id_, generation_, info);
    }
    void OnPong(absl::Duration rtt) override {
      if (auto impl = impl_.lock(); impl && impl->metrics_) impl->metrics_->KeepaliveAnswered(rtt);
    }
    void OnKeepaliveMissed() override {
      if (auto impl = impl_.lock(); impl && impl->metrics_) impl->metrics_->KeepaliveMissed();
    }
    void OnInboundMessage(absl::Time) override {
      if (auto impl = impl_.lock(); impl && impl->metrics_) impl->metrics_->InboundMessage();
    }
    void OnPhoneSeen(absl::Time at) override {
      if (auto impl = impl_.lock()) impl->Touched().OnPhoneSeen(id_, generation_, at);
    }
    void OnPairingCode(const std::string& code, absl::Duration valid_for) override {
      if (auto impl = impl_.lock())
        impl->Touched().OnPairingCode(id_, generation_, code, valid_for);
    }
    void OnQrCode(const std::string& text, absl::Duration valid_for, int index,
                  int total) override {
      if (auto impl = impl_.lock())
        impl->Touched().OnQrCode(id_, generation_, text, valid_for, index, total);
    }
    void OnPaired(const wa::PairedDevice& device, const wa::DeviceCredentials& creds) override {
      if (auto impl = impl_.lock()) impl->Touched().OnPaired(id_, generation_, device, creds);
    }

   private:
    std::weak_ptr<Impl> impl_;
    std::string id_;
    uint64_t generation_;
  };

  // The runtime of a stored row, created on first sight with the row's state.
  Runtime& Insert(const SessionRecord& rec) {
    auto [it, inserted] = sessions_.try_emplace(rec.id);
    Runtime& rt = it->second;
    if (inserted) {
      rt.state = rec.state;
      rt.reason = rec.reason;
      rt.last_error = rec.last_error;
      if (metrics_) metrics_->Transition(v1::SESSION_STATE_UNSPECIFIED, rt.state, rt.reason);
      rt.record = rec;
    } else {
      Settle(rt.record, rec);
    }
    return rt;
  }

  // The settings of a stored row (UpdateSession's fields) onto the runtime's copy, whose state
  // fields are newer than any row read (Mirror keeps them; the writer stores them later).
  static void Settle(SessionRecord& mine, const SessionRecord& stored) {
    mine.is_active = stored.is_active;
    mine.auto_connect = stored.auto_connect;
    mine.account_name = stored.account_name;
    mine.owner_email = stored.owner_email;
  }

  // Creates or refreshes the runtime from a stored row; opens its credentials.
  absl::StatusOr<Runtime*> Ensure(const SessionRecord& rec) {
    Runtime& rt = Insert(rec);
    if (!rt.creds && rec.credentials) {
      auto plain = sealer_.Open(rec.credentials->key_id, rec.credentials->blob);
      if (!plain.ok()) return plain.status();
      auto creds = wa::DeviceCredentials::FromBaileysJson(ToString(*plain));
      if (!creds.ok()) return creds.status();
      rt.creds = *std::move(creds);
    }
    return &rt;
  }

  // The runtime of a stored row even when its credentials do not open: stopping, logging out
  // and deleting a session must not depend on them.
  Runtime& EnsureAnyway(const SessionRecord& rec) {
    auto ensured = Ensure(rec);
    return ensured.ok() ? **ensured : Insert(rec);
  }

  LiveInfo Live(const Runtime& rt) const {
    LiveInfo live;
    live.state = rt.state;
    live.reason = rt.reason;
    live.last_error = rt.last_error;
    live.socket_alive = rt.conn && rt.logged_in;
    live.retry_pending = rt.retry_timer != nullptr;
    live.pairing = rt.pairing != nullptr;
    live.owner = options_.replica_id;
    if (rt.conn) OverlayStats(live, *rt.conn);
    return live;
  }

  // The keepalive and traffic facts of a connection (atomics: any thread).
  static void OverlayStats(LiveInfo& live, const wa::Connection& conn) {
    const auto& s = conn.stats();
    live.missed_pings = s.missed_pings.load();
    live.inbound_messages = s.inbound_messages.load();
    live.last_inbound_at = MillisToTime(s.last_inbound_unix_ms.load());
    live.last_pong_at = MillisToTime(s.last_pong_unix_ms.load());
    if (int64_t rtt = s.keepalive_rtt_us.load(); rtt >= 0) {
      live.keepalive_rtt = absl::Microseconds(rtt);
    }
  }

  std::optional<LiveInfo> LiveOf(const std::string& id) const {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return std::nullopt;
    return Live(it->second);
  }

  void SetState(Runtime& rt, v1::SessionState to, v1::StateReason reason, std::string error = "",
                bool count_reconnect = false, bool count_error = false, bool clear_creds = false,
                std::optional<CredentialsUpdate> set_creds = std::nullopt,
                std::function<void(const absl::StatusOr<EventRecord>&)> on_stored = nullptr) {
    if (rt.state == to && rt.reason == reason && error.empty() && !count_reconnect && !set_creds &&
        !on_stored) {
      return;
    }
    Transition t = Change(rt.record, rt.state, to, reason, error);
    t.count_reconnect = count_reconnect;
    t.count_error = count_error;
    t.clear_credentials = clear_creds;
    t.set_credentials = std::move(set_creds);
    t.on_stored = std::move(on_stored);
    Apply(rt, std::move(t));
  }

  // Records `t` (from Change) for the session held in `rt`: the runtime, its record copy and
  // the metrics at once, the database through the writer, fenced by the session's lease.
  void Apply(Runtime& rt, Transition t) {
    t.lease_token = rt.lease_token;
    if (metrics_) metrics_->Transition(rt.state, t.to, t.reason);
    Mirror(rt.record, t);
    rt.state = t.to;
    rt.reason = t.reason;
    if (!t.error.empty()) rt.last_error = t.error;
    writer_.Post(std::move(t));
  }

  // A connection WhatsApp ended (a <failure> or <stream:error>): `to` with the code and, for a
  // temporary ban, its code and end.
  void SetEnded(Runtime& rt, v1::SessionState to, const wa::CloseInfo& info,
                bool clear_creds = false) {
    Transition t = Change(rt.record, rt.state, to, ReasonOf(info.cause), info.detail);
    t.count_error = true;
    t.clear_credentials = clear_creds;
    t.failure_code = info.code;
    if (to == v1::SESSION_STATE_BANNED) {
      t.ban_code = info.ban_code;
      if (info.ban_expires_in) t.ban_expires_at = t.at + *info.ban_expires_in;
    }
    Apply(rt, std::move(t));
  }

  // The transition of `rec` from `from` to `to`, logged.
  Transition Change(const SessionRecord& rec, v1::SessionState from, v1::SessionState to,
                    v1::StateReason reason, const std::string& error = "") const {
    Transition t;
    t.session_id = rec.id;
    t.tenant_id = rec.tenant_id;
    t.from = from;
    t.to = to;
    t.reason = reason;
    t.error = error;
    t.at = absl::Now();
    t.delete_session = to == v1::SESSION_STATE_DELETED;
    log_->info("session {} ({}): {} → {} ({}){}{}", rec.id, wa::MaskPhone(rec.phone_number),
               StateName(from), StateName(to), ReasonName(reason), error.empty() ? "" : ": ",
               error);
    return t;
  }

  // What RecordTransition does to the row, done to the runtime's copy, so that a session held
  // here is answered from memory (pg_store.cc RecordTransition is the reference).
  static void Mirror(SessionRecord& rec, const Transition& t) {
    rec.state = t.to;
    rec.reason = t.reason;
    if (!t.error.empty()) {
      rec.last_error = t.error;
    } else if (t.to == v1::SESSION_STATE_CONNECTED) {
      rec.last_error.clear();
    }
    if (t.to == v1::SESSION_STATE_CONNECTED) rec.last_connected_at = t.at;
    if (t.from == v1::SESSION_STATE_CONNECTED && t.to != v1::SESSION_STATE_CONNECTED) {
      rec.last_disconnected_at = t.at;
    }
    if (t.to == v1::SESSION_STATE_CONNECTED) {
      rec.failure_code = 0;
    } else if (t.failure_code > 0) {
      rec.failure_code = t.failure_code;
    }
    rec.ban_code = t.to == v1::SESSION_STATE_BANNED ? t.ban_code : 0;
    rec.ban_expires_at =
        t.to == v1::SESSION_STATE_BANNED ? t.ban_expires_at : std::optional<absl::Time>();
    rec.reconnect_count += t.count_reconnect ? 1 : 0;
    rec.error_count += t.count_error ? 1 : 0;
    if (t.set_credentials) {
      rec.credentials = t.set_credentials->sealed;
      rec.phone_number = t.set_credentials->phone_number;
      rec.device_jid = t.set_credentials->device_jid;
    } else if (t.clear_credentials) {
      rec.credentials.reset();
    }
    rec.updated_at = t.at;
  }

  absl::Status ConnectNow(Runtime& rt, v1::StateReason reason, bool count_reconnect) {
    if (stopping_) return absl::UnavailableError("session-service is shutting down");
    if (rt.lease_token == 0) {
      return absl::UnavailableError(
          absl::StrCat("session ", rt.record.id, " is not leased by this replica; retry"));
    }
    if (!rt.creds) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session ", rt.record.id, " has no credentials (logged out or never paired)"));
    }
    AbortConnection(rt);
    rt.awaiting_version = false;
    SetState(rt, rt.creds->paired() ? v1::SESSION_STATE_CONNECTING : v1::SESSION_STATE_QR_PENDING,
             reason, "", count_reconnect);
    rt.connecting_since = absl::Now();
    wa::ConnectionOptions connection = options_.connection;
    if (!rt.creds->paired()) connection.pairing_phone = rt.pairing_phone;
    if (options_.versions) connection.client.version = options_.versions->Current();
    rt.version = connection.client.version;
    if (reason == v1::STATE_REASON_USER) rt.version_retried = false;  // a person tries afresh
    rt.conn = wa::Connection::Start(
        io_.get_executor(), tls_, connection, *rt.creds,
        std::make_shared<Observer>(weak_from_this(), rt.record.id, rt.generation), log_);
    return absl::OkStatus();
  }

  void OnLoggedIn(const std::string& id, uint64_t generation, const wa::LoginInfo&) {
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.generation != generation) return;
    Runtime& rt = it->second;
    rt.logged_in = true;
    rt.attempt = 0;
    rt.version_retried = false;
    if (metrics_) metrics_->Connected(absl::Now() - rt.connecting_since);
    SetState(rt, v1::SESSION_STATE_CONNECTED, v1::STATE_REASON_LOGIN_SUCCESS);
    if (auto feed = std::exchange(rt.pairing, nullptr)) {
      PairingFeed::Update u;
      u.kind = PairingFeed::Update::Kind::kSuccess;
      u.device.jid = rt.creds->Jid();
      u.device.lid = rt.creds->lid;
      u.device.platform = rt.creds->platform;
      u.session = SessionView{rt.record, Live(rt)};
      feed->Push(std::move(u));
    }
  }

  // The account's phone showed itself; stored by the next FlushPhoneSightings.
  void OnPhoneSeen(const std::string& id, uint64_t generation, absl::Time at) {
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.generation != generation) return;
    auto& seen = it->second.record.phone_last_seen_at;
    if (seen && *seen >= at) return;
    seen = at;
    it->second.phone_seen_unsaved = true;
  }

  // The sightings not stored yet, marked stored.
  std::vector<std::pair<std::string, absl::Time>> TakePhoneSightings() {
    std::vector<std::pair<std::string, absl::Time>> out;
    for (auto& [id, rt] : sessions_) {
      if (!rt.phone_seen_unsaved || !rt.record.phone_last_seen_at) continue;
      rt.phone_seen_unsaved = false;
      out.emplace_back(id, *rt.record.phone_last_seen_at);
    }
    return out;
  }

  void OnQrCode(const std::string& id, uint64_t generation, const std::string& text,
                absl::Duration valid_for, int index, int total) {
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.generation != generation || !it->second.pairing) return;
    PairingFeed::Update u;
    u.qr = text;
    u.expires_at = absl::Now() + valid_for;
    u.index = index;
    u.total = total;
    it->second.pairing->Push(std::move(u));
  }

  void OnPairingCode(const std::string& id, uint64_t generation, const std::string& code,
                     absl::Duration valid_for) {
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.generation != generation || !it->second.pairing) return;
    PairingFeed::Update u;
    u.kind = PairingFeed::Update::Kind::kCode;
    u.qr = code;
    u.expires_at = absl::Now() + valid_for;
    it->second.pairing->Push(std::move(u));
  }

  void OnPaired(const std::string& id, uint64_t generation, const wa::PairedDevice& device,
                const wa::DeviceCredentials& creds) {
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.generation != generation) return;
    Runtime& rt = it->second;
    rt.creds = creds;
    auto sealed = sealer_.Seal(AsBytes(creds.ToBaileysJson()));
    CredentialsUpdate update{SealedCredentials{sealed.key_id, std::move(sealed.blob)},
                             std::to_string(creds.phone), creds.Jid()};
    rt.record.phone_number = update.phone_number;
    rt.record.device_jid = update.device_jid;
    rt.record.credentials = update.sealed;
    log_->info("session {}: paired as {} ({})", id, wa::MaskPhone(update.phone_number),
               device.platform);
    SetState(rt, v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_PAIRED, "", false, false, false,
             std::move(update));
  }

  // A pairing that ended without a login: tell the stream, forget the unpaired keys.
  void FailPairing(Runtime& rt, Failure::Reason reason, const std::string& message) {
    if (auto feed = std::exchange(rt.pairing, nullptr)) feed->Push(FailureUpdate(reason, message));
    if (rt.creds && !rt.creds->paired()) rt.creds.reset();
  }

  void OnClosed(const std::string& id, uint64_t generation, const wa::CloseInfo& info) {
    if (auto c = closing_.find(ClosingKey(id, generation)); c != closing_.end()) {
      closing_.erase(c);  // drops the last handle of the closed connection
      if (closing_.empty() && all_closed_) std::exchange(all_closed_, nullptr)();
    }
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second.generation != generation) return;
    Runtime& rt = it->second;
    rt.conn.reset();
    rt.logged_in = false;
    const v1::StateReason reason = ReasonOf(info.cause);
    if (rt.creds && !rt.creds->paired()) {
      // Registration ended without pair-success.
      const Failure::Reason why =
          info.cause == wa::CloseCause::kPairingTimeout    ? Failure::REASON_TIMEOUT
          : info.cause == wa::CloseCause::kPairingRejected ? Failure::REASON_REJECTED
                                                           : Failure::REASON_CONNECTION_FAILED;
      FailPairing(rt, why, info.detail);
      SetState(rt, v1::SESSION_STATE_DISCONNECTED, reason, info.detail, false,
               why != Failure::REASON_TIMEOUT);
      if (info.cause == wa::CloseCause::kClientOutdated && options_.versions) {
        // The next StartPairing announces a newer version, if the page names one.
        options_.versions->Outdated(rt.version, [](std::optional<wa::WaVersion>) {});
      }
      return;
    }
    if (rt.pairing && info.cause != wa::CloseCause::kRestartRequired) {
      FailPairing(rt, Failure::REASON_LOGIN_FAILED,
                  absl::StrCat("paired, but the first login failed: ", info.detail,
                               "; the credentials are stored and the session retries"));
    }
    switch (info.cause) {
      case wa::CloseCause::kClosedByUs:
        return;  // whoever closed it recorded the state
      case wa::CloseCause::kRestartRequired:
        (void)ConnectNow(rt, reason, /*count_reconnect=*/true);
        return;
      case wa::CloseCause::kLoggedOut:
        // 401, 403, 406: the device is gone at WhatsApp; its keys will never log in again.
        rt.creds.reset();
        SetEnded(rt, v1::SESSION_STATE_LOGGED_OUT, info, /*clear_creds=*/true);
        return;
      case wa::CloseCause::kReplaced:
        SetEnded(rt, v1::SESSION_STATE_REPLACED, info);
        return;
      case wa::CloseCause::kTemporaryBan:
        // Logging in again before the ban ends only meets the same failure; after it, at once.
        SetEnded(rt, v1::SESSION_STATE_BANNED, info);
        ScheduleBanEnd(rt);
        return;
      case wa::CloseCause::kClientOutdated:
        OnOutdated(rt, info);
        return;
      case wa::CloseCause::kLoginRefused:
        // Repeating a login WhatsApp refused invites flagging: a person (or a new version)
        // has to change something first.
        SetEnded(rt, v1::SESSION_STATE_DISCONNECTED, info);
        return;
      case wa::CloseCause::kServerError:
        // 500/503 and stream errors: WhatsApp's own trouble, retried with backoff.
        SetEnded(rt, v1::SESSION_STATE_DISCONNECTED, info);
        ScheduleRetry(rt);
        return;
      default:
        SetState(rt, v1::SESSION_STATE_DISCONNECTED, reason, info.detail, false, true);
        ScheduleRetry(rt);
    }
  }

  // <failure reason="405">: the version announced is too old for WhatsApp. Once per login
  // streak, a newer version is read (one read serves every session that met it) and the login
  // repeated with it, the session staying CONNECTING meanwhile; else CLIENT_OUTDATED.
  void OnOutdated(Runtime& rt, wa::CloseInfo info) {
    absl::StrAppend(&info.detail, " (announced ", rt.version.ToString(), ")");
    if (!options_.versions || rt.version_retried) {
      SetEnded(rt, v1::SESSION_STATE_DISCONNECTED, info);
      return;
    }
    rt.version_retried = true;
    rt.awaiting_version = true;
    log_->warn("session {}: WhatsApp refused {} as outdated; looking for a newer version",
               rt.record.id, rt.version.ToString());
    options_.versions->Outdated(
        rt.version, [weak = weak_from_this(), id = rt.record.id, generation = rt.generation,
                     info](std::optional<wa::WaVersion> newer) {
          auto self = weak.lock();
          if (!self) return;
          asio::post(self->io_, [self, id, generation, info, newer] {
            self->Touch();
            auto it = self->sessions_.find(id);
            if (it == self->sessions_.end() || it->second.generation != generation ||
                !it->second.awaiting_version || it->second.conn || self->stopping_) {
              return;  // something else moved the session on meanwhile
            }
            it->second.awaiting_version = false;
            if (!newer) {
              self->SetEnded(it->second, v1::SESSION_STATE_DISCONNECTED, info);
              return;
            }
            self->log_->info("session {}: logging in again announcing {}", id, newer->ToString());
            (void)self->ConnectNow(it->second, v1::STATE_REASON_RETRY, /*count_reconnect=*/true);
          });
        });
  }

  // A temporarily banned session connects again when its ban ends (at once when it already
  // has); without a known end it waits for a person.
  void ScheduleBanEnd(Runtime& rt) {
    if (!BanEnds(rt.record, rt.state)) return;
    const absl::Duration left =
        std::max(absl::ZeroDuration(), *rt.record.ban_expires_at - absl::Now());
    log_->info("session {}: temporarily banned; connecting again in {}", rt.record.id,
               absl::FormatDuration(absl::Ceil(left, absl::Seconds(1))));
    ScheduleAt(rt, left, v1::STATE_REASON_BAN_ENDED);
  }

  // The next backoff retry, or RETRIES_EXHAUSTED when the schedule is used up.
  void ScheduleRetry(Runtime& rt) {
    if (rt.attempt >= backoff_.max_attempts()) {
      SetState(rt, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_RETRIES_EXHAUSTED,
               rt.last_error);
      return;
    }
    ++rt.attempt;
    ScheduleAt(rt, backoff_.Delay(rt.attempt, rng_), v1::STATE_REASON_RETRY);
  }

  void ScheduleAt(Runtime& rt, absl::Duration delay, v1::StateReason reason) {
    rt.retry_timer = std::make_unique<asio::steady_timer>(io_, absl::ToChronoNanoseconds(delay));
    const uint64_t generation = rt.generation;
    rt.retry_timer->async_wait([self = shared_from_this(), id = rt.record.id, generation,
                                reason](auto ec) {
      if (ec) return;
      self->Touch();
      auto it = self->sessions_.find(id);
      if (it == self->sessions_.end() || it->second.generation != generation) return;
      it->second.retry_timer.reset();
      // auto_connect may have been turned off (UpdateSession) while the ban lasted.
      if (reason == v1::STATE_REASON_BAN_ENDED && !BanEnds(it->second.record, it->second.state)) {
        return;
      }
      (void)self->ConnectNow(it->second, reason, /*count_reconnect=*/true);
    });
  }

  // Cuts the socket without a goodbye and cancels a pending retry; whatever the old connection
  // reports afterwards carries a stale generation and is ignored.
  void AbortConnection(Runtime& rt) {
    rt.retry_timer.reset();
    if (rt.conn) rt.conn->Abort();
    rt.conn.reset();
    ++rt.generation;
    rt.logged_in = false;
  }

  void CloseConnection(Runtime& rt) {
    rt.retry_timer.reset();
    if (rt.conn) {
      // Keep the handle until OnClosed: dropping the last one aborts the connection, and the
      // goodbye (presence unavailable, WebSocket close) would be cut short.
      rt.conn->Close();
      closing_[ClosingKey(rt.record.id, rt.generation)] = std::move(rt.conn);
    }
    ++rt.generation;
    rt.logged_in = false;
    rt.attempt = 0;
  }

  void Disconnect(Runtime& rt, v1::StateReason reason) {
    CloseConnection(rt);
    // A person's Disconnect of a temporarily banned session also cancels its reconnect when
    // the ban ends (a shutdown keeps the ban for the next holder).
    if (rt.state == v1::SESSION_STATE_CONNECTED || rt.state == v1::SESSION_STATE_CONNECTING ||
        rt.state == v1::SESSION_STATE_QR_PENDING || rt.state == v1::SESSION_STATE_DISCONNECTED ||
        (rt.state == v1::SESSION_STATE_BANNED && reason == v1::STATE_REASON_USER)) {
      SetState(rt, v1::SESSION_STATE_DISCONNECTED, reason);
    }
  }

  // Logs the device out at WhatsApp (connecting first if needed) and forgets its credentials:
  // LOGGED_OUT with `final_reason`. `then` runs on the io thread afterwards with what WhatsApp
  // answered; the credentials are forgotten whatever it was.
  void Logout(const std::string& id, v1::StateReason final_reason,
              std::function<void(absl::Status)> then) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return then(absl::NotFoundError(absl::StrCat("no session ", id)));
    Runtime& rt = it->second;
    FailPairing(rt, Failure::REASON_CANCELLED, "the session was logged out");
    auto finish = [self = shared_from_this(), id, final_reason,
                   then = std::move(then)](absl::Status at_whatsapp) {
      auto it = self->sessions_.find(id);
      if (it == self->sessions_.end()) return then(at_whatsapp);
      Runtime& rt = it->second;
      self->AbortConnection(rt);
      rt.attempt = 0;
      rt.creds.reset();
      std::string error;
      if (!at_whatsapp.ok()) {
        error = absl::StrCat("credentials forgotten, but WhatsApp was not told (",
                             at_whatsapp.message(), "); remove the device on the phone");
      }
      self->SetState(rt, v1::SESSION_STATE_LOGGED_OUT, final_reason, error, false, false,
                     /*clear_creds=*/true);
      then(at_whatsapp);
    };
    if (!rt.creds || !rt.creds->paired()) return finish(absl::OkStatus());  // nothing to tell
    if (!rt.conn) {
      if (auto st = ConnectNow(rt, v1::STATE_REASON_USER, false); !st.ok()) return finish(st);
    }
    const uint64_t generation = rt.generation;
    rt.conn->Logout(
        [self = shared_from_this(), id, generation,
         finish = std::move(finish)](absl::Status st) mutable {
          asio::post(self->io_, [self, id, generation, st, finish = std::move(finish)]() mutable {
            self->Touch();
            auto it = self->sessions_.find(id);
            if (it != self->sessions_.end() && it->second.generation != generation) {
              // Something else (a Reconnect, another Logout) took over meanwhile.
              return finish(absl::AbortedError("the session changed during logout"));
            }
            finish(st);
          });
        },
        kLogoutIqTimeout);
  }

  // Should this session be connected without anyone asking (a status query, a takeover)?
  bool WantsRestore(const Runtime& rt) const {
    return rt.creds && rt.creds->paired() && !rt.conn && !rt.retry_timer && !rt.awaiting_version &&
           WantsSocket(rt.record, rt.state, rt.reason);
  }

  // Connects `ids` one after another at restore_per_second (each gap jittered ±50 %). A session
  // that no longer wants it by its turn (a Disconnect, an on-demand restore, a logout) is
  // skipped.
  void QueueRestore(const std::vector<std::string>& ids, v1::StateReason reason) {
    for (const auto& id : ids) restore_queue_.emplace_back(id, reason);
    if (!pace_timer_) PaceNext();
  }

  void PaceNext() {
    pace_timer_.reset();
    while (!restore_queue_.empty() && !stopping_) {
      auto [id, reason] = std::move(restore_queue_.front());
      restore_queue_.pop_front();
      auto it = sessions_.find(id);
      if (it == sessions_.end()) continue;
      if (!it->second.retry_timer && BanEnds(it->second.record, it->second.state)) {
        ScheduleBanEnd(it->second);
        continue;
      }
      if (!WantsRestore(it->second)) continue;
      (void)ConnectNow(it->second, reason, false);
      if (options_.restore_per_second > 0 && !restore_queue_.empty()) {
        std::uniform_real_distribution<double> jitter(0.5, 1.5);
        const absl::Duration gap = absl::Seconds(jitter(rng_) / options_.restore_per_second);
        pace_timer_ = std::make_unique<asio::steady_timer>(io_, absl::ToChronoNanoseconds(gap));
        pace_timer_->async_wait([self = shared_from_this()](auto ec) {
          if (!ec) self->Touched().PaceNext();
        });
        return;
      }
    }
  }

  // ---- leases (README "Architecture" › "More than one replica") ----

  ReplicaInfo Me() const { return {options_.replica_id, advertise_address_}; }

  // The runtime of a session whose lease this replica has just taken: created from the row,
  // or the existing one (after a renewal gap) carrying the new token. io thread.
  Runtime& Adopt(const SessionRecord& rec, int64_t token) {
    Runtime& rt = Insert(rec);
    rt.lease_token = token;
    if (metrics_) {
      metrics_->LeaseChange("acquired");
      metrics_->LeasesHeld(static_cast<int64_t>(sessions_.size()));
    }
    return rt;
  }

  // Drops the runtime of a session this replica no longer holds. io thread.
  void Forget(const std::string& id) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    if (metrics_) metrics_->Forgotten(it->second.state);
    sessions_.erase(it);
    if (metrics_) metrics_->LeasesHeld(static_cast<int64_t>(sessions_.size()));
  }

  // The lease carrying `token` is gone (taken over, or not renewed in time): the socket is cut
  // at once, since two sockets for one device make WhatsApp replace one with the other, and the
  // runtime is dropped. `record` writes DISCONNECTED / LEASE_LOST first; fenced by the token,
  // it lands only if no other replica took the session meanwhile. io thread.
  void LoseLease(const std::string& id, int64_t token, const std::string& why, bool record) {
    auto it = sessions_.find(id);
    if (it == sessions_.end() || token == 0 || it->second.lease_token != token) return;
    Runtime& rt = it->second;
    log_->warn("session {}: lease lost ({}); its socket is closed here", id, why);
    FailPairing(rt, Failure::REASON_CONNECTION_FAILED, absl::StrCat("lease lost: ", why));
    AbortConnection(rt);
    // Only a live session becomes LEASE_LOST: a ban, a refused login or a person's Disconnect
    // stays what it is, so that the next holder does not connect it.
    const bool live = rt.state == v1::SESSION_STATE_CONNECTED ||
                      rt.state == v1::SESSION_STATE_CONNECTING ||
                      rt.state == v1::SESSION_STATE_QR_PENDING;
    if (record && live) {
      SetState(rt, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_LEASE_LOST, why);
    }
    if (metrics_) metrics_->LeaseChange("lost");
    Forget(id);
  }

  // Makes sure this replica holds the lease of `rec` (its runtime exists and carries the
  // token), taking it when no other replica holds a live one. HeldElsewhere(owner) when one
  // does. A gRPC thread; acquisitions are serialized so that two calls never race for tokens.
  absl::Status HoldLease(const SessionRecord& rec) {
    absl::MutexLock lock(&lease_mu_);
    if (OnIo([&] {
          auto it = sessions_.find(rec.id);
          return it != sessions_.end() && it->second.lease_token != 0;
        })) {
      return absl::OkStatus();
    }
    WAS_ASSIGN_OR_RETURN(auto won,
                         store_.AcquireLeases({rec.id}, options_.replica_id, options_.lease_ttl));
    if (won.empty()) {
      WAS_ASSIGN_OR_RETURN(auto owner, store_.LeaseOwner(rec.id));
      if (!owner) {
        return absl::UnavailableError(
            absl::StrCat("the lease of session ", rec.id, " is changing hands; retry"));
      }
      return HeldElsewhere(rec.id, owner->id);
    }
    OnIo([&] { Adopt(rec, won.front().token); });
    return absl::OkStatus();
  }

  // The stored row of a session this replica now holds (HoldLease); `active_only` refuses an
  // inactive one first (CheckActive). A gRPC thread.
  absl::StatusOr<SessionRecord> Held(const std::string& id, bool active_only = false) {
    WAS_ASSIGN_OR_RETURN(SessionRecord rec, store_.Get(id));
    if (active_only) WAS_RETURN_IF_ERROR(CheckActive(rec));
    WAS_RETURN_IF_ERROR(HoldLease(rec));
    return rec;
  }

  // A state change of a session no replica holds (start-up clean-up): fenced with token 0, so
  // it lands only while nobody leases the session. io thread.
  void RecordUnowned(const SessionRecord& rec, v1::SessionState to, v1::StateReason reason) {
    writer_.Post(Change(rec, rec.state, to, reason));
  }

  // Leased sessions: their runtimes (credentials opened) queued for a paced connect with
  // `reason`; a session whose credentials do not open is recorded DISCONNECTED. io thread.
  void AdoptAndRestore(const std::vector<SessionRecord>& records,
                       const absl::flat_hash_map<std::string, int64_t>& tokens,
                       v1::StateReason reason) {
    std::vector<std::string> ids;
    for (const auto& rec : records) {
      auto token = tokens.find(rec.id);
      if (token == tokens.end()) continue;
      Runtime& rt = Adopt(rec, token->second);
      if (auto ensured = Ensure(rec); !ensured.ok()) {
        log_->error("session {} cannot be restored: {}", rec.id, ensured.status());
        SetState(rt, v1::SESSION_STATE_DISCONNECTED, reason,
                 std::string(ensured.status().message()), false, true);
        continue;
      }
      ids.push_back(rec.id);
    }
    QueueRestore(ids, reason);
  }

  // (id, token) of every lease this replica holds. io thread.
  std::vector<std::pair<std::string, int64_t>> HeldLeases() const {
    std::vector<std::pair<std::string, int64_t>> held;
    held.reserve(sessions_.size());
    for (const auto& [id, rt] : sessions_) {
      if (rt.lease_token != 0) held.emplace_back(id, rt.lease_token);
    }
    return held;
  }

  // The lease keeper's loop (its own thread): renew, then claim orphans, every lease_ttl / 3
  // or when woken by ClaimNow.
  void KeepLeases() {
    const absl::Duration every = options_.lease_ttl / 3;
    for (;;) {
      {
        absl::MutexLock lock(&keeper_mu_);
        auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(keeper_mu_) {
          return keeper_stop_ || keeper_nudged_;
        };
        keeper_mu_.AwaitWithTimeout(absl::Condition(&wake), every);
        if (keeper_stop_) return;
        keeper_nudged_ = false;
      }
      if (RenewLeases()) ClaimOrphans(v1::STATE_REASON_TAKEOVER);
    }
  }

  // Renews every lease held; cuts the sockets of those lost. False when the database could not
  // be reached (and past 0.8 × ttl without a renewal, every socket is closed).
  bool RenewLeases() {
    const SteadyClock::time_point sent = SteadyClock::now();
    const auto held = OnIo([this] { return HeldLeases(); });
    std::vector<int64_t> tokens;
    tokens.reserve(held.size());
    for (const auto& [id, token] : held) tokens.push_back(token);
    const absl::Status beat = store_.Heartbeat(Me());
    absl::StatusOr<std::vector<int64_t>> renewed =
        beat.ok() ? store_.RenewLeases(tokens, options_.lease_ttl) : beat;
    if (renewed.ok()) {
      last_renewed_ = sent;
      const absl::flat_hash_set<int64_t> alive(renewed->begin(), renewed->end());
      std::vector<std::pair<std::string, int64_t>> lost;
      for (const auto& h : held) {
        if (!alive.contains(h.second)) lost.push_back(h);
      }
      if (!lost.empty()) {
        asio::post(io_, [self = shared_from_this(), lost = std::move(lost)] {
          self->Touch();
          for (const auto& [id, token] : lost) {
            self->LoseLease(id, token, "another replica took it over", false);
          }
        });
      }
      return true;
    }
    const absl::Duration silent = absl::FromChrono(SteadyClock::now() - last_renewed_);
    log_->warn("cannot renew {} session leases (last renewed {} ago): {}", held.size(), silent,
               renewed.status());
    if (silent > options_.lease_ttl * 0.8 && !held.empty()) {
      log_->error(
          "closing {} sockets: their leases may have expired, so another replica may "
          "hold them",
          held.size());
      asio::post(io_, [self = shared_from_this(), held] {
        self->Touch();
        for (const auto& [id, token] : held) {
          self->LoseLease(id, token, "its lease could not be renewed (database unreachable)", true);
        }
      });
    }
    return false;
  }

  // Claims sessions that want a socket and have no live lease: this replica's share of all
  // wanted sessions, and at least its part of the orphans, so a dead replica's sessions are
  // spread over the living and none stays behind.
  void ClaimOrphans(v1::StateReason reason) {
    absl::MutexLock lock(&lease_mu_);
    if (stopping_claims_) return;
    auto replicas = store_.LiveReplicas(options_.lease_ttl);
    auto counts = replicas.ok() ? store_.CountWanted() : replicas.status();
    if (!counts.ok()) {
      log_->warn("cannot look for orphaned sessions: {}", counts.status());
      return;
    }
    if (counts->orphaned == 0) return;
    const int64_t live = std::max<int64_t>(1, static_cast<int64_t>(replicas->size()));
    const int64_t held = OnIo([this] { return static_cast<int64_t>(sessions_.size()); });
    const int64_t share = (counts->wanted + live - 1) / live;
    const int64_t limit = std::max(share - held, (counts->orphaned + live - 1) / live);
    auto claimed =
        store_.ClaimOrphans(options_.replica_id, options_.lease_ttl, static_cast<int>(limit));
    if (!claimed.ok()) {
      log_->warn("claiming orphaned sessions: {}", claimed.status());
      return;
    }
    if (claimed->empty()) return;
    std::vector<std::string> ids;
    absl::flat_hash_map<std::string, int64_t> tokens;
    for (const auto& l : *claimed) {
      ids.push_back(l.session_id);
      tokens[l.session_id] = l.token;
    }
    auto records = store_.GetMany(ids);
    if (!records.ok()) {
      std::vector<int64_t> giving_up;
      for (const auto& l : *claimed) giving_up.push_back(l.token);
      (void)store_.ReleaseLeases(giving_up);
      log_->warn("claimed {} sessions but could not read them: {}", ids.size(), records.status());
      return;
    }
    log_->info("took over {} sessions that no replica held ({} replicas live)", ids.size(), live);
    OnIo([&] { AdoptAndRestore(*records, tokens, reason); });
  }

  void ShutdownAll(std::function<void()> done) {
    stopping_ = true;
    pace_timer_.reset();
    for (auto& [id, rt] : sessions_) {
      FailPairing(rt, Failure::REASON_SHUTDOWN, "session-service is shutting down");
      Disconnect(rt, v1::STATE_REASON_SHUTDOWN);
    }
    if (closing_.empty()) {
      done();
    } else {
      all_closed_ = std::move(done);
    }
  }

  SessionMetrics* const metrics_;  // may be null
  asio::io_context& io_;
  asio::ssl::context& tls_;
  SessionStore& store_;
  const Sealer& sealer_;
  TransitionWriter& writer_;
  const ManagerOptions options_;
  const Backoff backoff_;
  std::shared_ptr<spdlog::logger> log_;
  std::mt19937_64 rng_;
  absl::flat_hash_map<std::string, Runtime> sessions_;
  // Connections closing gracefully, by ClosingKey; each handle is kept alive until OnClosed.
  absl::flat_hash_map<std::string, std::shared_ptr<wa::Connection>> closing_;
  static std::string ClosingKey(const std::string& id, uint64_t generation) {
    return absl::StrCat(id, "/", generation);
  }

  // Past the drain deadline: cut what is still closing.
  void AbortClosing() {
    for (auto& [key, conn] : closing_) conn->Abort();
  }
  std::function<void()> all_closed_;
  std::unique_ptr<asio::steady_timer> pace_timer_;
  std::atomic<uint64_t> epoch_{0};  // GetSession's read cache: bumped by every changing task
  struct CachedEntry {
    uint64_t epoch = 0;
    SessionView view;
    std::shared_ptr<wa::Connection> conn;
  };
  absl::Mutex views_mu_;
  absl::flat_hash_map<std::string, CachedEntry> views_ ABSL_GUARDED_BY(views_mu_);
  std::deque<std::pair<std::string, v1::StateReason>> restore_queue_;
  bool stopping_ = false;

  // Lease acquisitions (HoldLease, ClaimOrphans) one at a time.
  absl::Mutex lease_mu_;
  bool stopping_claims_ ABSL_GUARDED_BY(lease_mu_) = false;
  // The keeper thread's wake-ups.
  absl::Mutex keeper_mu_;
  bool keeper_stop_ ABSL_GUARDED_BY(keeper_mu_) = false;
  bool keeper_nudged_ ABSL_GUARDED_BY(keeper_mu_) = false;
  SteadyClock::time_point last_renewed_ = SteadyClock::now();  // keeper thread
  std::string advertise_address_;                              // set before RestoreAll
};

SessionManager::SessionManager(asio::io_context& io, asio::ssl::context& tls, SessionStore& store,
                               const Sealer& sealer, TransitionWriter& writer,
                               ManagerOptions options, std::shared_ptr<spdlog::logger> log,
                               SessionMetrics* metrics)
    : impl_(std::make_shared<Impl>(io, tls, store, sealer, writer, std::move(options),
                                   std::move(log), metrics)),
      readers_(std::make_unique<asio::thread_pool>(2)),
      store_(store),
      sealer_(sealer) {
  writer.set_on_fenced([weak = std::weak_ptr<Impl>(impl_)](const Transition& t) {
    auto impl = weak.lock();
    if (!impl) return;
    asio::post(impl->io_, [impl, id = t.session_id, token = t.lease_token] {
      impl->Touched().LoseLease(id, token, "another replica holds it now (a write was fenced)",
                                false);
    });
  });
}

SessionManager::~SessionManager() {
  StopKeeper();
  readers_->join();
}

void SessionManager::StopKeeper() {
  {
    absl::MutexLock lock(&impl_->keeper_mu_);
    impl_->keeper_stop_ = true;
  }
  if (keeper_.joinable()) keeper_.join();
}

void SessionManager::set_advertise_address(std::string address) {
  impl_->advertise_address_ = std::move(address);
}

void SessionManager::ClaimNow() {
  absl::MutexLock lock(&impl_->keeper_mu_);
  impl_->keeper_nudged_ = true;
}

absl::StatusOr<SessionView> SessionManager::Create(const NewSession& req) {
  SessionRecord rec;
  rec.tenant_id = req.tenant_id;
  rec.session_name = req.session_name.empty() ? "primary" : req.session_name;
  rec.account_name = req.account_name;
  rec.owner_email = req.owner_email;
  rec.auto_connect = req.auto_connect;
  if (!req.creds_json.empty()) {
    WAS_ASSIGN_OR_RETURN(auto creds, wa::DeviceCredentials::FromBaileysJson(req.creds_json));
    rec.phone_number = std::to_string(creds.phone);
    rec.device_jid = creds.Jid();
    auto sealed = sealer_.Seal(AsBytes(req.creds_json));
    rec.credentials = SealedCredentials{sealed.key_id, std::move(sealed.blob)};
  }
  // A session to pair later needs no runtime (nor lease) until StartPairing; one with
  // credentials is stored leased to this replica.
  const bool leased = rec.credentials.has_value();
  WAS_ASSIGN_OR_RETURN(auto created, leased ? store_.Create(rec, impl_->options_.replica_id,
                                                            impl_->options_.lease_ttl)
                                            : store_.Create(rec));
  if (!leased) return SessionView{created.first, std::nullopt};
  WAS_RETURN_IF_ERROR(impl_->HoldLease(created.first));
  return impl_->OnIo([&]() -> absl::StatusOr<SessionView> {
    WAS_ASSIGN_OR_RETURN(Impl::Runtime * rt, impl_->Ensure(created.first));
    if (rec.auto_connect)
      WAS_RETURN_IF_ERROR(impl_->ConnectNow(*rt, v1::STATE_REASON_CREATED, false));
    return SessionView{created.first, impl_->Live(*rt)};
  });
}

absl::StatusOr<SessionView> SessionManager::StartPairing(const PairingRequest& req,
                                                         std::shared_ptr<PairingFeed> feed) {
  absl::StatusOr<SessionRecord> rec;
  if (!req.session_id.empty()) {
    rec = store_.Get(req.session_id);
  } else {
    const std::string name = req.session_name.empty() ? "primary" : req.session_name;
    rec = store_.GetByName(req.tenant_id, name);
    if (absl::IsNotFound(rec.status())) {
      NewSession n;
      n.tenant_id = req.tenant_id;
      n.session_name = name;
      n.account_name = req.account_name;
      n.owner_email = req.owner_email;
      auto created = Create(n);
      // Two pairings raced to create it: the loser reuses the winner's row.
      if (absl::IsAlreadyExists(created.status())) {
        rec = store_.GetByName(req.tenant_id, name);
      } else if (!created.ok()) {
        return created.status();
      } else {
        rec = created->record;
      }
    }
  }
  if (!rec.ok()) return rec.status();
  if (rec->credentials) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session ", rec->id, " already has credentials; Logout first to pair another device"));
  }
  WAS_RETURN_IF_ERROR(impl_->HoldLease(*rec));
  return impl_->OnIo([&]() -> absl::StatusOr<SessionView> {
    if (impl_->stopping_) return absl::UnavailableError("session-service is shutting down");
    Impl::Runtime& rt = impl_->Insert(*rec);
    if (rt.pairing || (rt.creds && rt.creds->paired())) {
      return absl::FailedPreconditionError(
          absl::StrCat("session ", rec->id, " is being paired or has just been paired"));
    }
    rt.creds = wa::DeviceCredentials::Generate();
    rt.pairing = std::move(feed);
    rt.pairing_phone = req.phone_number;
    WAS_RETURN_IF_ERROR(impl_->ConnectNow(rt, v1::STATE_REASON_PAIRING, false));
    return SessionView{*rec, impl_->Live(rt)};
  });
}

void SessionManager::CancelPairing(const std::string& id,
                                   const std::shared_ptr<PairingFeed>& feed) {
  impl_->OnIo([&] {
    auto it = impl_->sessions_.find(id);
    if (it == impl_->sessions_.end() || it->second.pairing != feed) return;
    Impl::Runtime& rt = it->second;
    if (rt.creds && rt.creds->paired()) {
      rt.pairing.reset();  // paired already: the login goes on without a listener
      return;
    }
    impl_->FailPairing(rt, Failure::REASON_CANCELLED, "the pairing stream was cancelled");
    impl_->CloseConnection(rt);
    impl_->SetState(rt, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_PAIRING_CANCELLED);
  });
}

absl::StatusOr<SessionView> SessionManager::Get(const std::string& id) {
  auto restore = [&] { return impl_->HeldView(id); };
  if (auto view = impl_->OnIo(restore)) return *view;
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, store_.Get(id));
  // Held by another replica (rec.owner: the live view is there), or it should not be
  // connected: the stored row.
  const bool elsewhere = !rec.owner.empty() && rec.owner != impl_->options_.replica_id;
  if (elsewhere || !rec.credentials || !WantsSocket(rec, rec.state, rec.reason)) {
    return SessionView{rec, std::nullopt};
  }
  // Nobody holds it and it should be connected: restore it here.
  if (auto held = impl_->HoldLease(rec); !held.ok()) {
    if (auto owner = OwnerOf(held)) rec.owner = *owner;  // another replica took it meanwhile
    return SessionView{rec, std::nullopt};
  }
  if (auto view = impl_->OnIo(restore)) return *view;
  return SessionView{rec, std::nullopt};
}

void SessionManager::GetAsync(std::string id,
                              std::function<void(absl::StatusOr<SessionView>)> done) {
  // Answers exactly once: a handler dropped unrun (the io context or the readers stopping)
  // answers UNAVAILABLE from its destructor.
  struct Once {
    explicit Once(std::function<void(absl::StatusOr<SessionView>)> f) : fn(std::move(f)) {}
    Once(const Once&) = delete;
    Once& operator=(const Once&) = delete;
    std::function<void(absl::StatusOr<SessionView>)> fn;
    void operator()(absl::StatusOr<SessionView> view) {
      if (auto f = std::exchange(fn, nullptr)) f(std::move(view));
    }
    ~Once() {
      if (fn) fn(absl::UnavailableError("session-service is shutting down; retry"));
    }
  };
  if (auto view = impl_->CachedView(id)) return done(*std::move(view));
  auto once = std::make_shared<Once>(std::move(done));
  asio::post(impl_->io_, [this, id = std::move(id), once]() mutable {
    if (auto view = impl_->HeldView(id)) {
      impl_->CacheView(id, *view);
      return (*once)(*std::move(view));
    }
    asio::post(*readers_, [this, id = std::move(id), once] { (*once)(Get(id)); });
  });
}

absl::StatusOr<std::vector<SessionView>> SessionManager::GetMany(
    const std::vector<std::string>& ids) {
  WAS_ASSIGN_OR_RETURN(auto records, store_.GetMany(ids));
  return Overlay(std::move(records));
}

absl::StatusOr<SessionView> SessionManager::Connect(const std::string& id) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, impl_->Held(id, /*active_only=*/true));
  return impl_->OnIo([&]() -> absl::StatusOr<SessionView> {
    WAS_ASSIGN_OR_RETURN(Impl::Runtime * rt, impl_->Ensure(rec));
    const bool live = rt->conn != nullptr;
    if (!live) WAS_RETURN_IF_ERROR(impl_->ConnectNow(*rt, v1::STATE_REASON_USER, false));
    return SessionView{rec, impl_->Live(*rt)};
  });
}

absl::StatusOr<SessionView> SessionManager::Reconnect(const std::string& id, bool recovery) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, impl_->Held(id, /*active_only=*/true));
  return impl_->OnIo([&]() -> absl::StatusOr<SessionView> {
    WAS_ASSIGN_OR_RETURN(Impl::Runtime * rt, impl_->Ensure(rec));
    if (rt->pairing || (rt->creds && !rt->creds->paired())) {
      return absl::FailedPreconditionError(absl::StrCat("session ", id, " is being paired"));
    }
    // Not what a person or WhatsApp ended; a refused login is not repeated automatically either.
    if (recovery &&
        (IsTerminal(rt->state) || !rec.auto_connect ||
         (rt->state == v1::SESSION_STATE_DISCONNECTED &&
          (rt->reason == v1::STATE_REASON_USER || rt->reason == v1::STATE_REASON_LOGIN_REFUSED ||
           rt->reason == v1::STATE_REASON_CLIENT_OUTDATED)))) {
      return absl::FailedPreconditionError(absl::StrCat(
          "session ", id, " is ", v1::SessionState_Name(rt->state), " (",
          v1::StateReason_Name(rt->reason), rec.auto_connect ? "" : ", auto_connect off",
          "): only a person may bring it back, not an automatic recovery"));
    }
    rt->attempt = 0;
    WAS_RETURN_IF_ERROR(
        impl_->ConnectNow(*rt, recovery ? v1::STATE_REASON_RECOVERY : v1::STATE_REASON_USER,
                          /*count_reconnect=*/true));
    return SessionView{rec, impl_->Live(*rt)};
  });
}

absl::StatusOr<SessionView> SessionManager::Disconnect(const std::string& id) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, impl_->Held(id));
  return impl_->OnIo([&]() -> absl::StatusOr<SessionView> {
    Impl::Runtime& rt = impl_->EnsureAnyway(rec);
    impl_->FailPairing(rt, Failure::REASON_CANCELLED, "the session was disconnected");
    impl_->Disconnect(rt, v1::STATE_REASON_USER);
    return SessionView{rec, impl_->Live(rt)};
  });
}

absl::StatusOr<SessionView> SessionManager::Logout(const std::string& id) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, impl_->Held(id));
  Promised<absl::Status> done;
  impl_->OnIo([&] {
    impl_->EnsureAnyway(rec);
    impl_->Logout(id, v1::STATE_REASON_USER,
                  [p = done.promise](absl::Status st) { p->set_value(st); });
  });
  const absl::Status at_whatsapp = done.future.get();
  if (!at_whatsapp.ok()) {
    impl_->log_->warn("session {}: logout did not reach WhatsApp: {}", id, at_whatsapp);
  }
  WAS_ASSIGN_OR_RETURN(rec, store_.Get(id));
  rec.credentials.reset();
  return SessionView{rec, impl_->OnIo([&] { return impl_->LiveOf(id); })};
}

absl::Status SessionManager::Delete(const std::string& id) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, impl_->Held(id));
  Promised<absl::StatusOr<EventRecord>> stored;
  impl_->OnIo([&] {
    Impl::Runtime& rt = impl_->EnsureAnyway(rec);
    auto remove = [impl = impl_, id, p = stored.promise](absl::Status) {
      auto it = impl->sessions_.find(id);
      if (it == impl->sessions_.end()) {
        p->set_value(absl::NotFoundError(absl::StrCat("no session ", id)));
        return;
      }
      impl->FailPairing(it->second, Failure::REASON_CANCELLED, "the session was deleted");
      impl->CloseConnection(it->second);
      impl->SetState(it->second, v1::SESSION_STATE_DELETED, v1::STATE_REASON_DELETED, "", false,
                     false, false, std::nullopt,
                     [p](const absl::StatusOr<EventRecord>& e) { p->set_value(e); });
      impl->sessions_.erase(it);  // the lease row goes with the session row
      if (impl->metrics_) {
        impl->metrics_->LeasesHeld(static_cast<int64_t>(impl->sessions_.size()));
      }
    };
    if (rt.creds && rt.creds->paired()) {
      impl_->Logout(id, v1::STATE_REASON_DELETED, std::move(remove));
    } else {
      remove(absl::OkStatus());
    }
  });
  auto event = stored.future.get();
  return event.status();
}

absl::StatusOr<std::pair<SessionView, ProbeResult>> SessionManager::Probe(const std::string& id,
                                                                          absl::Duration timeout) {
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, store_.Get(id));
  Promised<absl::StatusOr<absl::Duration>> probed;
  WAS_RETURN_IF_ERROR(impl_->OnIo([&]() -> absl::Status {
    auto it = impl_->sessions_.find(id);
    if (it == impl_->sessions_.end() && !rec.owner.empty() &&
        rec.owner != impl_->options_.replica_id) {
      return HeldElsewhere(id, rec.owner);
    }
    if (it == impl_->sessions_.end() || !it->second.conn || !it->second.logged_in) {
      return absl::FailedPreconditionError(
          absl::StrCat("session ", id, " has no live socket here; Connect it first"));
    }
    it->second.conn->Probe(
        [p = probed.promise](absl::StatusOr<absl::Duration> rtt) { p->set_value(rtt); }, timeout);
    return absl::OkStatus();
  }));
  ProbeResult result{probed.future.get()};
  return std::pair{SessionView{rec, impl_->OnIo([&] { return impl_->LiveOf(id); })}, result};
}

absl::StatusOr<SessionView> SessionManager::ImportCredentials(const std::string& id,
                                                              const std::string& creds_json) {
  WAS_ASSIGN_OR_RETURN(auto creds, wa::DeviceCredentials::FromBaileysJson(creds_json));
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, impl_->Held(id));
  auto sealed = sealer_.Seal(AsBytes(creds_json));
  CredentialsUpdate update{SealedCredentials{sealed.key_id, std::move(sealed.blob)},
                           std::to_string(creds.phone), creds.Jid()};
  Promised<absl::StatusOr<EventRecord>> stored;
  WAS_RETURN_IF_ERROR(impl_->OnIo([&]() -> absl::Status {
    Impl::Runtime& rt = impl_->Insert(rec);
    if (rt.pairing) {
      return absl::FailedPreconditionError(absl::StrCat("session ", id, " is being paired"));
    }
    impl_->CloseConnection(rt);
    rt.creds = creds;
    rt.record.credentials = update.sealed;
    rt.record.phone_number = update.phone_number;
    rt.record.device_jid = update.device_jid;
    impl_->SetState(
        rt, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_CREDENTIALS_IMPORTED, "", false, false,
        false, update,
        [p = stored.promise](const absl::StatusOr<EventRecord>& e) { p->set_value(e); });
    return absl::OkStatus();
  }));
  WAS_RETURN_IF_ERROR(stored.future.get().status());
  WAS_ASSIGN_OR_RETURN(rec, store_.Get(id));
  return impl_->OnIo([&]() -> absl::StatusOr<SessionView> {
    auto it = impl_->sessions_.find(id);
    if (it == impl_->sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
    Impl::Runtime& rt = it->second;
    rt.record = rec;
    if (rec.is_active && rec.auto_connect && !rt.conn && !impl_->stopping_) {
      WAS_RETURN_IF_ERROR(impl_->ConnectNow(rt, v1::STATE_REASON_CREDENTIALS_IMPORTED, false));
    }
    return SessionView{rec, impl_->Live(rt)};
  });
}

absl::StatusOr<SessionView> SessionManager::Update(const std::string& id,
                                                   const SessionUpdate& update) {
  WAS_ASSIGN_OR_RETURN(SessionRecord before, store_.Get(id));
  const bool held_here = impl_->OnIo([&] { return impl_->sessions_.contains(id); });
  if (!held_here && !before.owner.empty() && before.owner != impl_->options_.replica_id) {
    return HeldElsewhere(id, before.owner);  // its holder applies is_active to the socket
  }
  WAS_ASSIGN_OR_RETURN(SessionRecord rec, store_.Update(id, update));
  return impl_->OnIo([&]() -> absl::StatusOr<SessionView> {
    auto it = impl_->sessions_.find(id);
    if (it == impl_->sessions_.end()) return SessionView{rec, std::nullopt};
    Impl::Runtime& rt = it->second;
    Impl::Settle(rt.record, rec);
    if (!rec.is_active) {
      impl_->FailPairing(rt, Failure::REASON_CANCELLED, "the session was made inactive");
      impl_->Disconnect(rt, v1::STATE_REASON_USER);
    }
    return SessionView{rec, impl_->Live(rt)};
  });
}

absl::StatusOr<SessionManager::RotationResult> SessionManager::RotateSealingKey() {
  RotationResult result;
  result.key_id = sealer_.current_key_id();
  for (;;) {
    WAS_ASSIGN_OR_RETURN(auto batch, store_.ListSealedNotUnder(result.key_id, 100));
    if (batch.empty()) break;
    int64_t progressed = 0;
    for (const auto& rec : batch) {
      auto plain = sealer_.Open(rec.credentials->key_id, rec.credentials->blob);
      if (!plain.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("credentials of session ", rec.id, " do not open under key id \"",
                         rec.credentials->key_id, "\": ", plain.status().message()));
      }
      auto sealed = sealer_.Seal(*plain);
      WAS_ASSIGN_OR_RETURN(bool replaced,
                           store_.ReplaceSealed(rec.id, *rec.credentials,
                                                SealedCredentials{sealed.key_id, sealed.blob}));
      if (replaced) ++result.resealed;
      ++progressed;  // a row changed meanwhile was re-sealed by whoever changed it
    }
    if (progressed == 0) break;
  }
  impl_->log_->info("re-sealed {} credentials under key id {}", result.resealed, result.key_id);
  return result;
}

std::vector<SessionView> SessionManager::Overlay(std::vector<SessionRecord> records) {
  return impl_->OnIo([&] {
    std::vector<SessionView> out;
    out.reserve(records.size());
    for (auto& r : records) {
      auto it = impl_->sessions_.find(r.id);
      if (it != impl_->sessions_.end()) {
        // What this replica recorded and the writer may not have stored yet.
        const SessionRecord& mine = it->second.record;
        r.failure_code = mine.failure_code;
        r.ban_code = mine.ban_code;
        r.ban_expires_at = mine.ban_expires_at;
        r.phone_last_seen_at = mine.phone_last_seen_at;
      }
      auto live = impl_->LiveOf(r.id);
      out.push_back({std::move(r), std::move(live)});
    }
    return out;
  });
}

absl::Status SessionManager::FlushPhoneSightings() {
  auto sightings = impl_->OnIo([&] { return impl_->TakePhoneSightings(); });
  if (sightings.empty()) return absl::OkStatus();
  absl::Status st = store_.RecordPhoneSightings(sightings);
  if (!st.ok()) {
    impl_->OnIo([&] {
      for (const auto& [id, at] : sightings) {
        auto it = impl_->sessions_.find(id);
        if (it != impl_->sessions_.end()) it->second.phone_seen_unsaved = true;
      }
    });
  }
  return st;
}

absl::Status SessionManager::RestoreAll() {
  const ManagerOptions& o = impl_->options_;
  WAS_ASSIGN_OR_RETURN(auto replicas, store_.LiveReplicas(o.lease_ttl));
  const bool first = std::all_of(replicas.begin(), replicas.end(),
                                 [&](const ReplicaInfo& r) { return r.id == o.replica_id; });
  WAS_RETURN_IF_ERROR(store_.Heartbeat(impl_->Me()));
  if (first) {
    WAS_ASSIGN_OR_RETURN(auto live, store_.ListLive());
    WAS_ASSIGN_OR_RETURN(auto restorable, store_.ListRestorable());
    std::vector<std::string> ids;
    for (const auto& rec : restorable) ids.push_back(rec.id);
    WAS_ASSIGN_OR_RETURN(auto won, store_.AcquireLeases(ids, o.replica_id, o.lease_ttl));
    absl::flat_hash_map<std::string, int64_t> tokens;
    for (const auto& l : won) tokens[l.session_id] = l.token;
    impl_->OnIo([&] {
      absl::flat_hash_set<std::string> will_restore(ids.begin(), ids.end());
      for (const auto& rec : live) {
        if (!will_restore.contains(rec.id)) {
          impl_->RecordUnowned(rec, v1::SESSION_STATE_DISCONNECTED,
                               v1::STATE_REASON_SERVICE_RESTART);
        }
      }
      impl_->log_->info("first replica up: restoring {} sessions at {} per second", tokens.size(),
                        o.restore_per_second > 0 ? std::to_string(o.restore_per_second)
                                                 : std::string("unlimited"));
      impl_->AdoptAndRestore(restorable, tokens, v1::STATE_REASON_STARTUP_RESTORE);
    });
  } else {
    impl_->log_->info("joining {} live replicas: claiming only sessions no replica holds",
                      replicas.size());
    impl_->ClaimOrphans(v1::STATE_REASON_TAKEOVER);
  }
  keeper_ = std::thread([impl = impl_] { impl->KeepLeases(); });
  return absl::OkStatus();
}

void SessionManager::Shutdown(absl::Time deadline) {
  auto closed = std::make_shared<std::promise<void>>();
  auto future = closed->get_future();
  asio::post(impl_->io_, [impl = impl_, closed] {
    impl->Touched().ShutdownAll([closed] { closed->set_value(); });
  });
  if (future.wait_until(absl::ToChronoTime(deadline)) != std::future_status::ready) {
    impl_->log_->warn("drain deadline reached; aborting the connections still closing");
    asio::post(impl_->io_, [impl = impl_] { impl->Touched().AbortClosing(); });
  }
}

void SessionManager::Leave() {
  {
    absl::MutexLock lock(&impl_->lease_mu_);
    impl_->stopping_claims_ = true;
  }
  StopKeeper();
  std::vector<int64_t> tokens;
  for (const auto& [id, token] : impl_->OnIo([&] { return impl_->HeldLeases(); })) {
    tokens.push_back(token);
  }
  if (auto st = store_.ReleaseLeases(tokens); !st.ok()) {
    impl_->log_->warn("could not give up {} leases (they expire in {}): {}", tokens.size(),
                      impl_->options_.lease_ttl, st);
  }
  if (auto st = store_.RemoveReplica(impl_->options_.replica_id); !st.ok()) {
    impl_->log_->warn("could not leave the replica set: {}", st);
  }
  impl_->log_->info("gave up {} session leases", tokens.size());
}

}  // namespace wasentinel::session
