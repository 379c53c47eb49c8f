// StateMachine: what the API's calls, the lease keeper and the phone-sighting flush do on the
// connection thread (state_machine.cc has the transitions, connection events and retries).
#include "absl/strings/str_cat.h"
#include "messenger.h"
#include "session_rules.h"
#include "state_machine.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::session {
namespace {

using Failure = v1::PairingUpdate::Failure;

}  // namespace

std::optional<SessionView> StateMachine::HeldView(const std::string& id) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  Runtime& rt = it->second;
  const bool open_creds = !rt.creds && rt.record.credentials;
  if (open_creds || (WantsRestore(rt) && !stopping_)) views_.Touch();  // it changes the runtime
  if (open_creds) (void)Ensure(rt.record);
  if (WantsRestore(rt) && !stopping_) {
    (void)ConnectNow(rt, v1::STATE_REASON_RESTORE_ON_DEMAND, false);
  }
  SessionView view{rt.record, Live(rt)};
  views_.Put(id, view, rt.conn, sessions_.size());
  return view;
}

absl::StatusOr<SessionView> StateMachine::Created(const SessionRecord& rec) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  WAS_ASSIGN_OR_RETURN(Runtime * rt, Ensure(rec));
  if (rec.auto_connect) WAS_RETURN_IF_ERROR(ConnectNow(*rt, v1::STATE_REASON_CREATED, false));
  return SessionView{rec, Live(*rt)};
}

absl::StatusOr<SessionView> StateMachine::StartPairing(const SessionRecord& rec,
                                                       std::shared_ptr<PairingFeed> feed,
                                                       const std::string& phone_number) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  if (stopping_) return absl::UnavailableError("session-service is shutting down");
  Runtime& rt = Insert(rec);
  if (rt.pairing || (rt.creds && rt.creds->paired())) {
    return absl::FailedPreconditionError(
        absl::StrCat("session ", rec.id, " is being paired or has just been paired"));
  }
  rt.creds = wa::DeviceCredentials::Generate();
  rt.pairing = std::move(feed);
  rt.pairing_phone = phone_number;
  WAS_RETURN_IF_ERROR(ConnectNow(rt, v1::STATE_REASON_PAIRING, false));
  return SessionView{rec, Live(rt)};
}

void StateMachine::CancelPairing(const std::string& id, const std::shared_ptr<PairingFeed>& feed) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.pairing != feed) return;
  Runtime& rt = it->second;
  if (rt.creds && rt.creds->paired()) {
    rt.pairing.reset();  // paired already: the login goes on without a listener
    return;
  }
  FailPairing(rt, Failure::REASON_CANCELLED, "the pairing stream was cancelled");
  CloseConnection(rt);
  SetState(rt, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_PAIRING_CANCELLED);
}

absl::StatusOr<SessionView> StateMachine::Connect(const SessionRecord& rec) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  WAS_ASSIGN_OR_RETURN(Runtime * rt, Ensure(rec));
  if (!rt->conn) WAS_RETURN_IF_ERROR(ConnectNow(*rt, v1::STATE_REASON_USER, false));
  return SessionView{rec, Live(*rt)};
}

absl::StatusOr<SessionView> StateMachine::Reconnect(const SessionRecord& rec, bool recovery) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  WAS_ASSIGN_OR_RETURN(Runtime * rt, Ensure(rec));
  if (rt->pairing || (rt->creds && !rt->creds->paired())) {
    return absl::FailedPreconditionError(absl::StrCat("session ", rec.id, " is being paired"));
  }
  if (recovery && !RecoveryAllowed(rec, rt->state, rt->reason)) {
    return absl::FailedPreconditionError(
        absl::StrCat("session ", rec.id, " is ", v1::SessionState_Name(rt->state), " (",
                     v1::StateReason_Name(rt->reason), rec.auto_connect ? "" : ", auto_connect off",
                     "): only a person may bring it back, not an automatic recovery"));
  }
  rt->attempt = 0;
  WAS_RETURN_IF_ERROR(ConnectNow(*rt, recovery ? v1::STATE_REASON_RECOVERY : v1::STATE_REASON_USER,
                                 /*count_reconnect=*/true));
  return SessionView{rec, Live(*rt)};
}

SessionView StateMachine::Disconnect(const SessionRecord& rec) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  Runtime& rt = EnsureAnyway(rec);
  FailPairing(rt, Failure::REASON_CANCELLED, "the session was disconnected");
  DisconnectRuntime(rt, v1::STATE_REASON_USER);
  return SessionView{rec, Live(rt)};
}

void StateMachine::Logout(const SessionRecord& rec, v1::StateReason reason,
                          std::function<void(absl::Status)> then) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  EnsureAnyway(rec);
  LogoutRuntime(rec.id, reason, std::move(then));
}

void StateMachine::Delete(const SessionRecord& rec,
                          std::function<void(const absl::StatusOr<EventRecord>&)> on_stored) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  Runtime& rt = EnsureAnyway(rec);
  auto remove = [self = shared_from_this(), id = rec.id,
                 on_stored = std::move(on_stored)](absl::Status) {
    auto it = self->sessions_.find(id);
    if (it == self->sessions_.end()) {
      on_stored(absl::NotFoundError(absl::StrCat("no session ", id)));
      return;
    }
    self->FailPairing(it->second, Failure::REASON_CANCELLED, "the session was deleted");
    self->CloseConnection(it->second);
    self->SetState(it->second, v1::SESSION_STATE_DELETED, v1::STATE_REASON_DELETED,
                   {.on_stored = on_stored});
    self->sessions_.erase(it);  // the lease row goes with the session row
    if (self->metrics_) self->metrics_->LeasesHeld(static_cast<int64_t>(self->sessions_.size()));
  };
  if (rt.creds && rt.creds->paired()) {
    LogoutRuntime(rec.id, v1::STATE_REASON_DELETED, std::move(remove));
  } else {
    remove(absl::OkStatus());
  }
}

absl::Status StateMachine::Probe(const SessionRecord& rec, absl::Duration timeout,
                                 std::function<void(absl::StatusOr<absl::Duration>)> done) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  auto it = sessions_.find(rec.id);
  if (it == sessions_.end() && !rec.owner.empty() && rec.owner != options_.replica_id) {
    return HeldElsewhere(rec.id, rec.owner);
  }
  if (it == sessions_.end() || !it->second.conn || !it->second.logged_in) {
    return absl::FailedPreconditionError(
        absl::StrCat("session ", rec.id, " has no live socket here; Connect it first"));
  }
  it->second.conn->Probe(std::move(done), timeout);
  return absl::OkStatus();
}

absl::Status StateMachine::ImportCredentials(
    const SessionRecord& rec, const wa::DeviceCredentials& creds, CredentialsUpdate update,
    std::function<void(const absl::StatusOr<EventRecord>&)> on_stored) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  Runtime& rt = Insert(rec);
  if (rt.pairing) {
    return absl::FailedPreconditionError(absl::StrCat("session ", rec.id, " is being paired"));
  }
  CloseConnection(rt);
  rt.creds = creds;
  ForgetMessages(rt);  // imported: another device's keys
  rt.record.credentials = update.sealed;
  rt.record.phone_number = update.phone_number;
  rt.record.device_jid = update.device_jid;
  SetState(rt, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_CREDENTIALS_IMPORTED,
           {.set_credentials = std::move(update), .on_stored = std::move(on_stored)});
  return absl::OkStatus();
}

absl::StatusOr<SessionView> StateMachine::Imported(const SessionRecord& rec) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  auto it = sessions_.find(rec.id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", rec.id));
  Runtime& rt = it->second;
  rt.record = rec;
  if (rec.is_active && rec.auto_connect && !rt.conn && !stopping_) {
    WAS_RETURN_IF_ERROR(ConnectNow(rt, v1::STATE_REASON_CREDENTIALS_IMPORTED, false));
  }
  return SessionView{rec, Live(rt)};
}

SessionView StateMachine::Updated(const SessionRecord& rec) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  auto it = sessions_.find(rec.id);
  if (it == sessions_.end()) return SessionView{rec, std::nullopt};
  Runtime& rt = it->second;
  SettleSettings(rt.record, rec);
  if (!rec.is_active) {
    FailPairing(rt, Failure::REASON_CANCELLED, "the session was made inactive");
    DisconnectRuntime(rt, v1::STATE_REASON_USER);
  }
  return SessionView{rec, Live(rt)};
}

std::vector<SessionView> StateMachine::Overlay(std::vector<SessionRecord> records) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  std::vector<SessionView> out;
  out.reserve(records.size());
  for (auto& r : records) {
    auto it = sessions_.find(r.id);
    if (it != sessions_.end()) {
      // What this replica recorded and the writer may not have stored yet.
      const SessionRecord& mine = it->second.record;
      r.failure_code = mine.failure_code;
      r.ban_code = mine.ban_code;
      r.ban_expires_at = mine.ban_expires_at;
      r.phone_last_seen_at = mine.phone_last_seen_at;
    }
    auto live = LiveOf(r.id);
    out.push_back({std::move(r), std::move(live)});
  }
  return out;
}

// ---- phone sightings ----

std::vector<std::pair<std::string, absl::Time>> StateMachine::TakePhoneSightings() {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  std::vector<std::pair<std::string, absl::Time>> out;
  for (auto& [id, rt] : sessions_) {
    if (!rt.phone_seen_unsaved || !rt.record.phone_last_seen_at) continue;
    rt.phone_seen_unsaved = false;
    out.emplace_back(id, *rt.record.phone_last_seen_at);
  }
  return out;
}

void StateMachine::KeepPhoneSightings(
    const std::vector<std::pair<std::string, absl::Time>>& sightings) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  for (const auto& [id, at] : sightings) {
    auto it = sessions_.find(id);
    if (it != sessions_.end()) it->second.phone_seen_unsaved = true;
  }
}

// ---- leases ----

bool StateMachine::HasLease(const std::string& id) const {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  auto it = sessions_.find(id);
  return it != sessions_.end() && it->second.lease_token != 0;
}

void StateMachine::Adopt(const SessionRecord& rec, int64_t token) {
  Runtime& rt = Insert(rec);
  rt.lease_token = token;
  if (metrics_) {
    metrics_->LeaseChange("acquired");
    metrics_->LeasesHeld(static_cast<int64_t>(sessions_.size()));
  }
}

void StateMachine::AdoptAndRestore(const std::vector<SessionRecord>& records,
                                   const absl::flat_hash_map<std::string, int64_t>& tokens,
                                   v1::StateReason reason) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  std::vector<std::string> ids;
  for (const auto& rec : records) {
    auto token = tokens.find(rec.id);
    if (token == tokens.end()) continue;
    Adopt(rec, token->second);
    if (auto ensured = Ensure(rec); !ensured.ok()) {
      log_->error("session {} cannot be restored: {}", rec.id, ensured.status());
      SetState(sessions_.at(rec.id), v1::SESSION_STATE_DISCONNECTED, reason,
               {.error = std::string(ensured.status().message()), .count_error = true});
      continue;
    }
    ids.push_back(rec.id);
  }
  pacer_.Queue(ids, reason, weak_from_this());
}

std::vector<std::pair<std::string, int64_t>> StateMachine::HeldLeases() const {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  std::vector<std::pair<std::string, int64_t>> held;
  held.reserve(sessions_.size());
  for (const auto& [id, rt] : sessions_) {
    if (rt.lease_token != 0) held.emplace_back(id, rt.lease_token);
  }
  return held;
}

void StateMachine::Forget(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  if (metrics_) metrics_->Forgotten(it->second.state);
  sessions_.erase(it);
  if (metrics_) metrics_->LeasesHeld(static_cast<int64_t>(sessions_.size()));
}

// Two sockets for one device make WhatsApp replace one with the other: a lost lease cuts the
// socket at once. Fenced by the token, the LEASE_LOST record lands only if no other replica
// took the session meanwhile.
void StateMachine::LoseLease(const std::string& id, int64_t token, const std::string& why,
                             bool record) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
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
    SetState(rt, v1::SESSION_STATE_DISCONNECTED, v1::STATE_REASON_LEASE_LOST, {.error = why});
  }
  if (metrics_) metrics_->LeaseChange("lost");
  // Its Signal state in memory is the new holder's to write now.
  if (options_.messages) options_.messages->Forget(id);
  Forget(id);
}

void StateMachine::RecordUnowned(const SessionRecord& rec, v1::SessionState to,
                                 v1::StateReason reason) {
  WAS_ASSERT_CONNECTION_THREAD(io_);
  writer_.Post(Change(rec, rec.state, to, reason));
}

}  // namespace wasentinel::session
