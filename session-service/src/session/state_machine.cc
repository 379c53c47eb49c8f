#include "state_machine.h"

#include <boost/asio/post.hpp>

#include "absl/strings/str_cat.h"
#include "credentials.h"
#include "e2ee/prekey_stanzas.h"
#include "messenger.h"
#include "pg_store.h"
#include "prekey_supply.h"
#include "session_rules.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {
namespace {

namespace asio = boost::asio;
using Failure = v1::PairingUpdate::Failure;

// How long WhatsApp has to answer remove-companion-device.
constexpr absl::Duration kLogoutIqTimeout = absl::Seconds(10);

std::string ClosingKey(const std::string& id, uint64_t generation) {
  return absl::StrCat(id, "/", generation);
}

}  // namespace

// The messenger's way out: the connection of one generation of a session, while it lasts.
class StateMachine::Link final : public MessageLink {
 public:
  Link(std::weak_ptr<StateMachine> sm, std::string id, uint64_t generation)
      : sm_(std::move(sm)), id_(std::move(id)), generation_(generation) {}
  void Send(wa::Node node) override {
    if (auto sm = sm_.lock()) {
      sm->Post([sm, id = id_, generation = generation_, node = std::move(node)]() mutable {
        if (Runtime* rt = sm->Find(id, generation); rt && rt->conn) rt->conn->Send(std::move(node));
      });
    }
  }
  void Query(wa::Node iq, std::function<void(absl::StatusOr<wa::Node>)> done,
             absl::Duration timeout) override {
    auto sm = sm_.lock();
    if (!sm) return done(absl::UnavailableError("session-service is stopping"));
    sm->Post([sm, id = id_, generation = generation_, iq = std::move(iq), done = std::move(done),
              timeout]() mutable {
      Runtime* rt = sm->Find(id, generation);
      if (!rt || !rt->conn) return done(absl::UnavailableError("the connection ended"));
      rt->conn->Query(std::move(iq), std::move(done), timeout);
    });
  }

 private:
  std::weak_ptr<StateMachine> sm_;
  std::string id_;
  uint64_t generation_;
};

// Hands a connection's events to the state machine's thread, tagged with the connection's
// generation. Runs on the connection thread (wa::Connection calls its observer there).
class StateMachine::Observer final : public wa::ConnectionObserver {
 public:
  Observer(std::weak_ptr<StateMachine> sm, std::string id, uint64_t generation)
      : sm_(std::move(sm)), id_(std::move(id)), generation_(generation) {}
  void OnLoggedIn(const wa::LoginInfo&) override {
    if (auto sm = Touched()) sm->OnLoggedIn(id_, generation_);
  }
  void OnClosed(const wa::CloseInfo& info) override {
    if (auto sm = Touched()) sm->OnClosed(id_, generation_, info);
  }
  void OnPong(absl::Duration rtt) override {
    if (auto sm = sm_.lock(); sm && sm->metrics_) sm->metrics_->KeepaliveAnswered(rtt);
  }
  void OnKeepaliveMissed() override {
    if (auto sm = sm_.lock(); sm && sm->metrics_) sm->metrics_->KeepaliveMissed();
  }
  void OnInboundMessage(absl::Time) override {
    if (auto sm = sm_.lock(); sm && sm->metrics_) sm->metrics_->InboundMessage();
  }
  void OnPhoneSeen(absl::Time at) override {
    if (auto sm = Touched()) sm->OnPhoneSeen(id_, generation_, at);
  }
  void OnPairingCode(const std::string& code, absl::Duration valid_for) override {
    if (auto sm = Touched()) sm->OnPairingCode(id_, generation_, code, valid_for);
  }
  void OnQrCode(const std::string& text, absl::Duration valid_for, int index, int total) override {
    if (auto sm = Touched()) sm->OnQrCode(id_, generation_, text, valid_for, index, total);
  }
  void OnPaired(const wa::PairedDevice& device, const wa::DeviceCredentials& creds) override {
    if (auto sm = Touched()) sm->OnPaired(id_, generation_, device, creds);
  }
  void OnPreKeyCount(int64_t count) override {
    if (auto sm = sm_.lock()) sm->OnPreKeyCount(id_, generation_, count);
  }
  void OnIdentityChanged(const std::string& user) override {
    if (auto sm = sm_.lock()) sm->OnIdentityChanged(id_, generation_, user);
  }
  bool OnEncryptedMessage(const wa::Node& message) override {
    auto sm = sm_.lock();
    return sm && sm->OnEncryptedMessage(id_, generation_, message);
  }
  void OnMessageStanza(const wa::Node& stanza) override {
    auto sm = sm_.lock();
    if (sm && sm->options_.messages && sm->Find(id_, generation_)) {
      sm->options_.messages->OnStanza(id_, stanza);
    }
  }

 private:
  // The state machine, its read cache invalidated: the event changes the session.
  std::shared_ptr<StateMachine> Touched() {
    auto sm = sm_.lock();
    if (sm) sm->views_.Touch();
    return sm;
  }
  std::weak_ptr<StateMachine> sm_;
  std::string id_;
  uint64_t generation_;
};

StateMachine::StateMachine(asio::io_context& io, asio::ssl::context& tls, const Sealer& sealer,
                           TransitionWriter& writer, const ManagerOptions& options, Clock& clock,
                           std::shared_ptr<spdlog::logger> log, SessionMetrics* metrics,
                           ConnectionFactory connect)
    : metrics_(metrics),
      io_(io),
      tls_(tls),
      sealer_(sealer),
      writer_(writer),
      options_(options),
      clock_(clock),
      backoff_(options_.backoff, options_.backoff_jitter),
      log_(std::move(log)),
      connect_(std::move(connect)),
      rng_(std::random_device{}()),
      pacer_(
          io, options_.restore_per_second, static_cast<size_t>(options_.restore_concurrency),
          [this](const std::string& id, v1::StateReason reason) { return RestoreOne(id, reason); },
          [this](const std::string& id) {
            auto it = sessions_.find(id);
            return it != sessions_.end() && it->second.conn && !it->second.logged_in;
          }) {
  if (!connect_) {
    connect_ = [this](const wa::ConnectionOptions& o, const wa::DeviceCredentials& creds,
                      std::shared_ptr<wa::ConnectionObserver> observer) {
      return wa::Connection::Start(io_.get_executor(), tls_, o, creds, std::move(observer), log_);
    };
  }
}

void StateMachine::Post(std::function<void()> fn) {
  asio::post(io_, [this, fn = std::move(fn)] {
    views_.Touch();
    fn();
  });
}

// ---- the runtimes ----

StateMachine::Runtime& StateMachine::Insert(const SessionRecord& rec) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  auto [it, inserted] = sessions_.try_emplace(rec.id);
  Runtime& rt = it->second;
  if (inserted) {
    rt.state = rec.state;
    rt.reason = rec.reason;
    rt.last_error = rec.last_error;
    if (metrics_) metrics_->Transition(v1::SESSION_STATE_UNSPECIFIED, rt.state, rt.reason);
    rt.record = rec;
  } else {
    SettleSettings(rt.record, rec);
  }
  return rt;
}

absl::StatusOr<StateMachine::Runtime*> StateMachine::Ensure(const SessionRecord& rec) {
  Runtime& rt = Insert(rec);
  if (!rt.creds && rec.credentials) {
    auto plain = sealer_.Open(rec.credentials->key_id, rec.credentials->blob);
    if (!plain.ok()) return plain.status();
    auto creds = wa::DeviceCredentials::FromBaileysJson(ToString(*plain));
    if (!creds.ok()) return creds.status();
    rt.creds = *std::move(creds);
    ReleaseSealedCopy(rt);
  }
  return &rt;
}

// Once the credentials are open in `rt.creds`, the sealed copy in the record is only a marker
// that there are credentials (its key id stays): its bytes (~1.2 KB) live in the database alone.
// Credentials are opened again only after a logout cleared both. Not while pairing: `rt.creds`
// is then a fresh, unpaired identity, not what the record holds, and a failed pairing drops it.
void StateMachine::ReleaseSealedCopy(Runtime& rt) {
  if (rt.creds && rt.creds->paired() && rt.record.credentials) {
    Bytes().swap(rt.record.credentials->blob);
  }
}

// Stopping, logging out and deleting a session must not depend on its credentials opening.
StateMachine::Runtime& StateMachine::EnsureAnyway(const SessionRecord& rec) {
  auto ensured = Ensure(rec);
  return ensured.ok() ? **ensured : Insert(rec);
}

StateMachine::Runtime* StateMachine::Find(const std::string& id, uint64_t generation) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.generation != generation) return nullptr;
  return &it->second;
}

LiveInfo StateMachine::Live(const Runtime& rt) const {
  LiveInfo live;
  live.state = rt.state;
  live.reason = rt.reason;
  live.last_error = rt.last_error;
  live.socket_alive = rt.conn && rt.logged_in;
  live.retry_pending = rt.retry_timer != nullptr;
  live.pairing = rt.pairing != nullptr;
  live.owner = options_.replica_id;
  if (rt.conn) OverlayConnectionStats(live, *rt.conn);
  return live;
}

std::optional<LiveInfo> StateMachine::LiveOf(const std::string& id) const {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  return Live(it->second);
}

// ---- transitions ----

void StateMachine::SetState(Runtime& rt, v1::SessionState to, v1::StateReason reason,
                            StateChange change) {
  if (rt.state == to && rt.reason == reason && change.error.empty() && !change.count_reconnect &&
      !change.set_credentials && !change.on_stored) {
    return;
  }
  Transition t = Change(rt.record, rt.state, to, reason, change.error);
  t.count_reconnect = change.count_reconnect;
  t.count_error = change.count_error;
  t.clear_credentials = change.clear_credentials;
  t.set_credentials = std::move(change.set_credentials);
  t.on_stored = std::move(change.on_stored);
  Apply(rt, std::move(t));
}

// A connection WhatsApp ended (a <failure> or <stream:error>): `to` with the code and, for a
// temporary ban, its code and end.
void StateMachine::SetEnded(Runtime& rt, v1::SessionState to, const wa::CloseInfo& info,
                            bool clear_credentials) {
  Transition t = Change(rt.record, rt.state, to, ReasonOf(info.cause), info.detail);
  t.count_error = true;
  t.clear_credentials = clear_credentials;
  t.failure_code = info.code;
  if (to == v1::SESSION_STATE_BANNED) {
    t.ban_code = info.ban_code;
    if (info.ban_expires_in) t.ban_expires_at = t.at + *info.ban_expires_in;
  }
  Apply(rt, std::move(t));
}

// Records `t` for the session held in `rt`: the runtime, its record copy and the metrics at
// once, the database through the writer, fenced by the session's lease.
void StateMachine::Apply(Runtime& rt, Transition t) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  t.lease_token = rt.lease_token;
  if (metrics_) metrics_->Transition(rt.state, t.to, t.reason);
  MirrorTransition(rt.record, t);
  ReleaseSealedCopy(rt);
  rt.state = t.to;
  rt.reason = t.reason;
  if (!t.error.empty()) rt.last_error = t.error;
  writer_.Post(std::move(t));
}

// The transition of `rec` from `from` to `to`, logged.
Transition StateMachine::Change(const SessionRecord& rec, v1::SessionState from,
                                v1::SessionState to, v1::StateReason reason,
                                const std::string& error) const {
  Transition t;
  t.session_id = rec.id;
  t.tenant_id = rec.tenant_id;
  t.from = from;
  t.to = to;
  t.reason = reason;
  t.error = error;
  t.at = clock_.Now();
  t.delete_session = to == v1::SESSION_STATE_DELETED;
  log_->info("session {} ({}): {} → {} ({}){}{}", rec.id, wa::MaskPhone(rec.phone_number),
             StateName(from), StateName(to), ReasonName(reason), error.empty() ? "" : ": ", error);
  return t;
}

absl::Status StateMachine::ConnectNow(Runtime& rt, v1::StateReason reason, bool count_reconnect) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  if (stopping_) return absl::UnavailableError("session-service is shutting down");
  if (rt.lease_token == 0) {
    return absl::UnavailableError(
        absl::StrCat("session ", rt.record.id, " is not leased by this replica; retry"));
  }
  if (!rt.creds) {
    return absl::FailedPreconditionError(
        absl::StrCat("session ", rt.record.id, " has no credentials (logged out or never paired)"));
  }
  AbortConnection(rt);
  rt.awaiting_version = false;
  SetState(rt, rt.creds->paired() ? v1::SESSION_STATE_CONNECTING : v1::SESSION_STATE_QR_PENDING,
           reason, {.count_reconnect = count_reconnect});
  rt.connecting_since = clock_.Now();
  wa::ConnectionOptions connection = options_.connection;
  if (!rt.creds->paired()) connection.pairing_phone = rt.pairing_phone;
  if (options_.versions) connection.client.version = options_.versions->Current();
  rt.version = connection.client.version;
  if (reason == v1::STATE_REASON_USER) rt.version_retried = false;  // a person tries afresh
  rt.conn = connect_(connection, *rt.creds,
                     std::make_shared<Observer>(weak_from_this(), rt.record.id, rt.generation));
  return absl::OkStatus();
}

// ---- connection events ----

void StateMachine::OnLoggedIn(const std::string& id, uint64_t generation) {
  Runtime* rt = Find(id, generation);
  if (!rt) return;
  rt->logged_in = true;
  WakePacer();
  rt->attempt = 0;
  rt->version_retried = false;
  if (metrics_) metrics_->Connected(clock_.Now() - rt->connecting_since);
  SetState(*rt, v1::SESSION_STATE_CONNECTED, v1::STATE_REASON_LOGIN_SUCCESS);
  if (options_.messages && rt->creds && rt->creds->paired()) {
    options_.messages->Online(id, rt->lease_token, *rt->creds,
                              std::make_shared<Link>(weak_from_this(), id, generation));
  }
  if (auto feed = std::exchange(rt->pairing, nullptr)) {
    PairingFeed::Update u;
    u.kind = PairingFeed::Update::Kind::kSuccess;
    u.device.jid = rt->creds->Jid();
    u.device.lid = rt->creds->lid;
    u.device.platform = rt->creds->platform;
    u.session = SessionView{rt->record, Live(*rt)};
    feed->Push(std::move(u));
  }
}

// The account's phone showed itself; stored by the next FlushPhoneSightings.
void StateMachine::OnPhoneSeen(const std::string& id, uint64_t generation, absl::Time at) {
  Runtime* rt = Find(id, generation);
  if (!rt) return;
  auto& seen = rt->record.phone_last_seen_at;
  if (seen && *seen >= at) return;
  seen = at;
  rt->phone_seen_unsaved = true;
}

// The server holds `count` of the device's one-time pre-keys: under the minimum, a batch is
// made and stored (off this thread), then uploaded on the connection that asked, if it is
// still up (docs/wa-protocol.md §11). One batch at a time per session.
void StateMachine::OnPreKeyCount(const std::string& id, uint64_t generation, int64_t count) {
  Runtime* rt = Find(id, generation);
  if (!rt || !options_.prekeys || !rt->creds || !rt->creds->paired() ||
      count >= signal::kMinServerPreKeys || rt->prekeys_in_flight) {
    return;
  }
  rt->prekeys_in_flight = true;
  log_->info("session {}: WhatsApp holds {} of its one-time pre-keys; making more", id, count);
  options_.prekeys->Make(id, rt->lease_token,
                         [weak = weak_from_this(), id, generation](auto keys) mutable {
                           if (auto sm = weak.lock()) {
                             sm->Post([sm, id, generation, keys = std::move(keys)]() mutable {
                               sm->UploadPreKeys(id, generation, std::move(keys));
                             });
                           }
                         });
}

// An encrypted message: decrypted and stored by the receiver, which then names the receipt (or
// retry receipt) this connection sends, if it is still the session's.
bool StateMachine::OnEncryptedMessage(const std::string& id, uint64_t generation,
                                      const wa::Node& message) {
  Runtime* rt = Find(id, generation);
  if (!rt || !options_.messages || !rt->creds || !rt->creds->paired()) return false;
  options_.messages->Receive(
      id, rt->lease_token, *rt->creds, message,
      [weak = weak_from_this(), id, generation](std::vector<wa::Node> replies) {
        if (replies.empty()) return;
        if (auto sm = weak.lock()) {
          sm->Post([sm, id, generation, replies = std::move(replies)]() mutable {
            Runtime* rt = sm->Find(id, generation);
            if (!rt || !rt->conn) return;  // WhatsApp delivers it again to the next connection
            for (auto& n : replies) rt->conn->Send(std::move(n));
          });
        }
      });
  return true;
}

void StateMachine::OnIdentityChanged(const std::string& id, uint64_t generation,
                                     const std::string& user) {
  Runtime* rt = Find(id, generation);
  if (!rt || !options_.messages || !rt->creds || !rt->creds->paired()) return;
  options_.messages->IdentityChanged(id, rt->lease_token, *rt->creds, user);
}

void StateMachine::UploadPreKeys(const std::string& id, uint64_t generation,
                                 absl::StatusOr<std::vector<signal::PreKey>> keys) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Runtime& rt = it->second;
  rt.prekeys_in_flight = false;
  auto failed = [&](const absl::Status& st) {
    log_->warn("session {}: one-time pre-keys not uploaded: {}", id, st.message());
    if (metrics_) metrics_->PreKeyUpload("failed");
  };
  if (!keys.ok()) return failed(keys.status());
  if (rt.generation != generation || !rt.conn || !rt.creds) {
    // Stored, not uploaded: the next login's count asks for another batch.
    return failed(absl::UnavailableError("the connection ended before the upload"));
  }
  const wa::DeviceCredentials& c = *rt.creds;
  signal::PreKeyUpload upload;
  upload.registration_id = c.registration_id;
  upload.identity_pub.assign(c.identity_key.pub.begin(), c.identity_key.pub.end());
  upload.signed_pre_key = SignedPreKeyOf(c);  // the private half is not read by the upload
  const size_t n = keys->size();
  upload.pre_keys = *std::move(keys);
  rt.conn->Query(
      signal::PreKeyUploadIq(upload),
      [weak = weak_from_this(), id, n](absl::StatusOr<wa::Node> answer) {
        auto sm = weak.lock();
        if (!sm) return;
        if (!answer.ok()) {
          sm->log_->warn("session {}: WhatsApp refused the upload of {} one-time pre-keys: {}", id,
                         n, answer.status().message());
          if (sm->metrics_) sm->metrics_->PreKeyUpload("failed");
          return;
        }
        sm->log_->info("session {}: uploaded {} one-time pre-keys", id, n);
        if (sm->metrics_) sm->metrics_->PreKeyUpload("uploaded");
      },
      absl::Seconds(60));
}

void StateMachine::OnQrCode(const std::string& id, uint64_t generation, const std::string& text,
                            absl::Duration valid_for, int index, int total) {
  Runtime* rt = Find(id, generation);
  if (!rt || !rt->pairing) return;
  PairingFeed::Update u;
  u.qr = text;
  u.expires_at = clock_.Now() + valid_for;
  u.index = index;
  u.total = total;
  rt->pairing->Push(std::move(u));
}

void StateMachine::OnPairingCode(const std::string& id, uint64_t generation,
                                 const std::string& code, absl::Duration valid_for) {
  Runtime* rt = Find(id, generation);
  if (!rt || !rt->pairing) return;
  PairingFeed::Update u;
  u.kind = PairingFeed::Update::Kind::kCode;
  u.qr = code;
  u.expires_at = clock_.Now() + valid_for;
  rt->pairing->Push(std::move(u));
}

void StateMachine::OnPaired(const std::string& id, uint64_t generation,
                            const wa::PairedDevice& device, const wa::DeviceCredentials& creds) {
  Runtime* rt = Find(id, generation);
  if (!rt) return;
  rt->creds = creds;
  ForgetMessages(*rt);  // a new identity: no Signal state of an older device may be used
  auto sealed = sealer_.Seal(AsBytes(creds.ToBaileysJson()));
  CredentialsUpdate update{SealedCredentials{sealed.key_id, std::move(sealed.blob)},
                           std::to_string(creds.phone), creds.Jid()};
  rt->record.phone_number = update.phone_number;
  rt->record.device_jid = update.device_jid;
  rt->record.credentials = update.sealed;
  log_->info("session {}: paired as {} ({})", id, wa::MaskPhone(update.phone_number),
             device.platform);
  SetState(*rt, v1::SESSION_STATE_CONNECTING, v1::STATE_REASON_PAIRED,
           {.set_credentials = std::move(update)});
}

// A pairing that ended without a login: tell the stream, forget the unpaired keys.
void StateMachine::FailPairing(Runtime& rt, Failure::Reason reason, const std::string& message) {
  if (auto feed = std::exchange(rt.pairing, nullptr)) feed->Push(PairingFailure(reason, message));
  if (rt.creds && !rt.creds->paired()) rt.creds.reset();
}

void StateMachine::OnClosed(const std::string& id, uint64_t generation, const wa::CloseInfo& info) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  if (auto c = closing_.find(ClosingKey(id, generation)); c != closing_.end()) {
    closing_.erase(c);  // drops the last handle of the closed connection
    if (closing_.empty() && all_closed_) std::exchange(all_closed_, nullptr)();
  }
  Runtime* found = Find(id, generation);
  if (!found) return;
  Runtime& rt = *found;
  rt.conn.reset();
  if (rt.logged_in && options_.messages) options_.messages->Offline(id);
  rt.logged_in = false;
  WakePacer();
  const v1::StateReason reason = ReasonOf(info.cause);
  if (rt.creds && !rt.creds->paired()) {
    // Registration ended without pair-success.
    const Failure::Reason why =
        info.cause == wa::CloseCause::kPairingTimeout    ? Failure::REASON_TIMEOUT
        : info.cause == wa::CloseCause::kPairingRejected ? Failure::REASON_REJECTED
                                                         : Failure::REASON_CONNECTION_FAILED;
    FailPairing(rt, why, info.detail);
    SetState(rt, v1::SESSION_STATE_DISCONNECTED, reason,
             {.error = info.detail, .count_error = why != Failure::REASON_TIMEOUT});
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
      ForgetMessages(rt);
      SetEnded(rt, v1::SESSION_STATE_LOGGED_OUT, info, /*clear_credentials=*/true);
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
      // Repeating a login WhatsApp refused invites flagging: a person (or a new version) has to
      // change something first.
      SetEnded(rt, v1::SESSION_STATE_DISCONNECTED, info);
      return;
    case wa::CloseCause::kServerError:
      // 500/503 and stream errors: WhatsApp's own trouble, retried with backoff.
      SetEnded(rt, v1::SESSION_STATE_DISCONNECTED, info);
      ScheduleRetry(rt);
      return;
    default:
      SetState(rt, v1::SESSION_STATE_DISCONNECTED, reason,
               {.error = info.detail, .count_error = true});
      ScheduleRetry(rt);
  }
}

// <failure reason="405">: the version announced is too old for WhatsApp. Once per login streak,
// a newer version is read (one read serves every session that met it) and the login repeated
// with it, the session staying CONNECTING meanwhile; else CLIENT_OUTDATED.
void StateMachine::OnOutdated(Runtime& rt, wa::CloseInfo info) {
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
        self->Post([self, id, generation, info, newer] {
          Runtime* rt = self->Find(id, generation);
          if (!rt || !rt->awaiting_version || rt->conn || self->stopping_) {
            return;  // something else moved the session on meanwhile
          }
          rt->awaiting_version = false;
          if (!newer) {
            self->SetEnded(*rt, v1::SESSION_STATE_DISCONNECTED, info);
            return;
          }
          self->log_->info("session {}: logging in again announcing {}", id, newer->ToString());
          (void)self->ConnectNow(*rt, v1::STATE_REASON_RETRY, /*count_reconnect=*/true);
        });
      });
}

// ---- retries ----

// A temporarily banned session connects again when its ban ends (at once when it already has);
// without a known end it waits for a person.
void StateMachine::ScheduleBanEnd(Runtime& rt) {
  if (!BanEnds(rt.record, rt.state)) return;
  const absl::Duration left =
      std::max(absl::ZeroDuration(), *rt.record.ban_expires_at - clock_.Now());
  log_->info("session {}: temporarily banned; connecting again in {}", rt.record.id,
             absl::FormatDuration(absl::Ceil(left, absl::Seconds(1))));
  ScheduleAt(rt, left, v1::STATE_REASON_BAN_ENDED);
}

// The next backoff retry, or RETRIES_EXHAUSTED when the schedule is used up.
void StateMachine::ScheduleRetry(Runtime& rt) {
  const std::optional<absl::Duration> delay = backoff_.Next(rt.attempt, rng_);
  if (!delay) {
    SetState(rt, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_RETRIES_EXHAUSTED,
             {.error = rt.last_error});
    return;
  }
  ++rt.attempt;
  ScheduleAt(rt, *delay, v1::STATE_REASON_RETRY);
}

void StateMachine::ScheduleAt(Runtime& rt, absl::Duration delay, v1::StateReason reason) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  rt.retry_timer = std::make_unique<asio::steady_timer>(io_, absl::ToChronoNanoseconds(delay));
  rt.retry_timer->async_wait(
      [self = shared_from_this(), id = rt.record.id, generation = rt.generation, reason](auto ec) {
        if (ec) return;
        self->views_.Touch();
        Runtime* rt = self->Find(id, generation);
        if (!rt) return;
        rt->retry_timer.reset();
        // auto_connect may have been turned off (UpdateSession) while the ban lasted.
        if (reason == v1::STATE_REASON_BAN_ENDED && !BanEnds(rt->record, rt->state)) return;
        (void)self->ConnectNow(*rt, reason, /*count_reconnect=*/true);
      });
}

// ---- closing ----

// Cuts the socket without a goodbye and cancels a pending retry; whatever the old connection
// reports afterwards carries a stale generation and is ignored.
void StateMachine::AbortConnection(Runtime& rt) {
  rt.retry_timer.reset();
  if (rt.conn) rt.conn->Abort();
  rt.conn.reset();
  ++rt.generation;
  // The connection's OnClosed will not find this generation: the messenger pauses now.
  if (rt.logged_in && options_.messages) options_.messages->Offline(rt.record.id);
  rt.logged_in = false;
}

void StateMachine::ForgetMessages(Runtime& rt) {
  if (options_.messages) options_.messages->Forget(rt.record.id);
}

void StateMachine::CloseConnection(Runtime& rt) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  rt.retry_timer.reset();
  if (rt.conn) {
    // Keep the handle until OnClosed: dropping the last one aborts the connection, and the
    // goodbye (presence unavailable, WebSocket close) would be cut short.
    rt.conn->Close();
    closing_[ClosingKey(rt.record.id, rt.generation)] = std::move(rt.conn);
  }
  ++rt.generation;
  if (rt.logged_in && options_.messages) options_.messages->Offline(rt.record.id);
  rt.logged_in = false;
  rt.attempt = 0;
}

void StateMachine::DisconnectRuntime(Runtime& rt, v1::StateReason reason) {
  CloseConnection(rt);
  // A person's Disconnect of a temporarily banned session also cancels its reconnect when the
  // ban ends (a shutdown keeps the ban for the next holder).
  if (rt.state == v1::SESSION_STATE_CONNECTED || rt.state == v1::SESSION_STATE_CONNECTING ||
      rt.state == v1::SESSION_STATE_QR_PENDING || rt.state == v1::SESSION_STATE_DISCONNECTED ||
      (rt.state == v1::SESSION_STATE_BANNED && reason == v1::STATE_REASON_USER)) {
    SetState(rt, v1::SESSION_STATE_DISCONNECTED, reason);
  }
}

void StateMachine::LogoutRuntime(const std::string& id, v1::StateReason final_reason,
                                 std::function<void(absl::Status)> then) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
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
    self->ForgetMessages(rt);
    std::string error;
    if (!at_whatsapp.ok()) {
      error = absl::StrCat("credentials forgotten, but WhatsApp was not told (",
                           at_whatsapp.message(), "); remove the device on the phone");
    }
    self->SetState(rt, v1::SESSION_STATE_LOGGED_OUT, final_reason,
                   {.error = error, .clear_credentials = true});
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
        self->Post([self, id, generation, st, finish = std::move(finish)]() mutable {
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

// ---- restores ----

// A connection attempt ended: the restore pacer may start the next one. Posted, so that it
// never runs inside the handler that reported the end.
void StateMachine::WakePacer() {
  boost::asio::post(io_, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->pacer_.Wake();
  });
}

// Should this session be connected without anyone asking (a status query, a takeover)?
bool StateMachine::WantsRestore(const Runtime& rt) const {
  return rt.creds && rt.creds->paired() && !rt.conn && !rt.retry_timer && !rt.awaiting_version &&
         WantsSocket(rt.record, rt.state, rt.reason);
}

// The restore pacer's turn for `id`: a session that no longer wants a socket by its turn (a
// Disconnect, an on-demand restore, a logout) is skipped; a ban waits for its end.
bool StateMachine::RestoreOne(const std::string& id, v1::StateReason reason) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  views_.Touch();
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return false;
  if (!it->second.retry_timer && BanEnds(it->second.record, it->second.state)) {
    ScheduleBanEnd(it->second);
    return false;
  }
  if (!WantsRestore(it->second)) return false;
  (void)ConnectNow(it->second, reason, false);
  return true;
}

// ---- shutdown ----

void StateMachine::ShutdownAll(std::function<void()> done) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  stopping_ = true;
  pacer_.Stop();
  for (auto& [id, rt] : sessions_) {
    FailPairing(rt, Failure::REASON_SHUTDOWN, "session-service is shutting down");
    DisconnectRuntime(rt, v1::STATE_REASON_SHUTDOWN);
  }
  if (closing_.empty()) {
    done();
  } else {
    all_closed_ = std::move(done);
  }
}

void StateMachine::AbortClosing() {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  for (auto& [key, conn] : closing_) conn->Abort();
}

}  // namespace wasentinel::session
