#include "session_service.h"

#include <malloc.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "event_watch.h"
#include "request_checks.h"
#include "wasentinel/common/grpc_status.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/validation.h"

namespace wasentinel::session {

// Beside session::ToProto(SessionView): the time conversions of common/proto_time.h.
using ::wasentinel::FromProto;
using ::wasentinel::ToProto;

namespace {

constexpr size_t kMaxCredsJson = 1 << 20;

// owner_email: empty (no owner) or an SMTP mailbox; it becomes an alert's RCPT TO.
grpc::Status CheckEmail(const std::string& email) {
  return email.empty() ? grpc::Status::OK : ToGrpc(CheckMailbox("owner_email", email));
}

grpc::Status CheckNames(const std::string& session_name, const std::string& account_name) {
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(CheckText("session_name", session_name, {.max_bytes = 64})));
  return ToGrpc(CheckText("account_name", account_name, {.max_bytes = 256}));
}

grpc::Status CheckCreds(const std::string& creds, bool required) {
  if (creds.empty() && required) return Invalid("creds_json is required (a Baileys creds.json)");
  if (creds.size() > kMaxCredsJson) return Invalid("creds_json is larger than 1 MiB");
  return grpc::Status::OK;
}

// Baileys' pre-key-<id>.json files beside a creds.json (their contents are read by the manager).
grpc::Status CheckPreKeyFiles(const google::protobuf::Map<std::string, std::string>& files,
                              const std::string& creds) {
  if (files.empty()) return grpc::Status::OK;
  if (creds.empty()) return Invalid("pre_key_files come with the creds_json they belong to");
  if (files.size() > 2000) return Invalid("at most 2000 pre_key_files");
  for (const auto& [name, contents] : files) {
    if (contents.size() > 4096) return Invalid(absl::StrCat(name, " is larger than 4 KiB"));
  }
  return grpc::Status::OK;
}

// The usual ending of a call that answers a session: the error, or the session in `resp`.
template <class Resp>
grpc::Status Answer(const absl::StatusOr<SessionView>& view, Resp* resp) {
  if (!view.ok()) return ToGrpc(view.status());
  *resp->mutable_session() = ToProto(*view);
  return grpc::Status::OK;
}

// README "Architecture" › "Health": ERROR when sessions exist and none is connected; DEGRADED when
// some are not.
v1::OverallStatus OverallOf(int64_t total, int64_t connected) {
  if (total > 0 && connected == 0) return v1::OVERALL_STATUS_ERROR;
  return connected < total ? v1::OVERALL_STATUS_DEGRADED : v1::OVERALL_STATUS_OK;
}

// Set on a forwarded call: the receiving replica answers it itself.
constexpr char kForwardedBy[] = "x-wasentinel-forwarded-by";
constexpr absl::Duration kForwardDeadline = absl::Seconds(60);

}  // namespace

v1::Session ToProto(const SessionView& view) {
  const SessionRecord& r = view.record;
  v1::Session s;
  s.set_id(r.id);
  s.set_tenant_id(r.tenant_id);
  s.set_session_name(r.session_name);
  s.set_phone_number(r.phone_number);
  s.set_device_jid(r.device_jid);
  s.set_account_name(r.account_name);
  s.set_owner_email(r.owner_email);
  s.set_state(r.state);
  s.set_reason(r.reason);
  s.set_last_error(r.last_error);
  s.set_is_active(r.is_active);
  s.set_auto_connect(r.auto_connect);
  s.set_has_credentials(r.credentials.has_value());
  if (r.last_connected_at) *s.mutable_last_connected_at() = ToProto(*r.last_connected_at);
  if (r.last_disconnected_at) *s.mutable_last_disconnected_at() = ToProto(*r.last_disconnected_at);
  *s.mutable_created_at() = ToProto(r.created_at);
  *s.mutable_updated_at() = ToProto(r.updated_at);
  s.set_reconnect_count(r.reconnect_count);
  s.set_error_count(r.error_count);
  s.set_owner(r.owner);
  s.set_failure_code(r.failure_code);
  s.set_ban_code(r.ban_code);
  if (r.ban_expires_at) *s.mutable_ban_expires_at() = ToProto(*r.ban_expires_at);
  if (r.phone_last_seen_at) *s.mutable_phone_last_seen_at() = ToProto(*r.phone_last_seen_at);
  if (const auto& live = view.live) {
    s.set_owner(live->owner);
    // This process's view is newer than the row: transitions are written behind it.
    s.set_state(live->state);
    s.set_reason(live->reason);
    if (!live->last_error.empty()) s.set_last_error(live->last_error);
    s.set_socket_alive(live->socket_alive);
    s.set_inbound_messages(live->inbound_messages);
    s.set_missed_pings(live->missed_pings);
    if (live->last_inbound_at)
      *s.mutable_last_inbound_message_at() = ToProto(*live->last_inbound_at);
    if (live->last_pong_at) *s.mutable_last_pong_at() = ToProto(*live->last_pong_at);
    if (live->keepalive_rtt) {
      *s.mutable_keepalive_rtt() = ToProto(*live->keepalive_rtt);
    }
  }
  return s;
}

SessionServiceImpl::SessionServiceImpl(SessionManager& manager, SessionStore& store, EventBus& bus,
                                       const ApiKeys& keys, std::string replica,
                                       std::shared_ptr<spdlog::logger> log,
                                       std::shared_ptr<grpc::ChannelCredentials> peers,
                                       SessionMetrics* metrics, WatchLimits watch_limits)
    : manager_(manager),
      store_(store),
      bus_(bus),
      keys_(keys),
      replica_(std::move(replica)),
      log_(std::move(log)),
      started_at_(absl::Now()),
      peers_(peers ? std::move(peers) : grpc::InsecureChannelCredentials()),
      metrics_(metrics),
      watch_limits_(watch_limits) {}

absl::StatusOr<v1::SessionService::Stub*> SessionServiceImpl::Peer(const std::string& id) {
  {
    absl::MutexLock lock(&peers_mu_);
    if (auto it = peer_stubs_.find(id); it != peer_stubs_.end()) return it->second.stub.get();
  }
  auto replicas = store_.LiveReplicas();
  if (!replicas.ok()) return replicas.status();
  for (const auto& r : *replicas) {
    if (r.id != id) continue;
    if (r.address.empty()) break;
    absl::MutexLock lock(&peers_mu_);
    auto& peer = peer_stubs_[id];
    if (!peer.stub || peer.address != r.address) {
      peer.address = r.address;
      peer.stub = v1::SessionService::NewStub(grpc::CreateChannel(r.address, peers_));
    }
    return peer.stub.get();
  }
  return absl::UnavailableError(
      absl::StrCat("replica ", id, " holds the session but its address is unknown; retry"));
}

std::unique_ptr<grpc::ClientContext> SessionServiceImpl::ForwardContext(
    grpc::ServerContext* ctx) const {
  // A child of the incoming call: its deadline and its cancellation carry over.
  return Forwarding(ctx, grpc::ClientContext::FromServerContext(*ctx));
}

std::unique_ptr<grpc::ClientContext> SessionServiceImpl::ForwardContext(
    grpc::CallbackServerContext* ctx) const {
  return Forwarding(ctx, grpc::ClientContext::FromCallbackServerContext(*ctx));
}

std::unique_ptr<grpc::ClientContext> SessionServiceImpl::Forwarding(
    grpc::ServerContextBase* ctx, std::unique_ptr<grpc::ClientContext> out) const {
  for (const char* key : {"x-api-key", "authorization"}) {
    if (auto v = Metadata(ctx, key); !v.empty()) out->AddMetadata(key, std::string(v));
  }
  out->AddMetadata(kForwardedBy, replica_);
  out->set_deadline(absl::ToChronoTime(absl::Now() + kForwardDeadline));  // the earlier wins
  return out;
}

std::optional<std::string> SessionServiceImpl::ForwardTarget(grpc::ServerContextBase* ctx,
                                                             const absl::Status& status) const {
  auto owner = OwnerOf(status);
  return owner ? ForwardTarget(ctx, *owner) : std::nullopt;
}

std::optional<std::string> SessionServiceImpl::ForwardTarget(grpc::ServerContextBase* ctx,
                                                             const std::string& owner) const {
  if (owner.empty() || owner == replica_ || !Metadata(ctx, kForwardedBy).empty()) {
    return std::nullopt;
  }
  return owner;
}

template <class Call>
grpc::Status SessionServiceImpl::Forward(grpc::ServerContext* ctx, const std::string& owner,
                                         const char* method, Call call) {
  auto stub = Peer(owner);
  if (!stub.ok()) return ToGrpc(stub.status());
  auto client = ForwardContext(ctx);
  if (metrics_) metrics_->Forwarded(method);
  log_->debug("{}: forwarded to replica {}", method, owner);
  return call(**stub, client.get());
}

template <class Resp, class Call>
grpc::Status SessionServiceImpl::Routed(grpc::ServerContext* ctx,
                                        const absl::StatusOr<SessionView>& view, const char* method,
                                        Resp* resp, Call call) {
  if (auto owner = ForwardTarget(ctx, view.status())) {
    return Forward(ctx, *owner, method,
                   [&](v1::SessionService::Stub& stub, grpc::ClientContext* client) {
                     return call(stub, client, resp);
                   });
  }
  return Answer(view, resp);
}

grpc::Status SessionServiceImpl::Authorize(grpc::ServerContextBase* ctx, Scope scope,
                                           Caller* caller) const {
  grpc::Status st = AuthorizeCall(keys_, ctx, scope, caller);
  if (!st.ok()) log_->debug("refused a call from {}: {}", ctx->peer(), st.error_message());
  return st;
}

// An E.164 number as people write it ("+49 151 2345-6789") → its digits. INVALID_ARGUMENT
// unless 7 to 15 digits with no leading 0 remain.
absl::StatusOr<std::string> PhoneDigits(std::string_view phone, std::string_view field) {
  std::string digits;
  for (char c : phone) {
    if (c >= '0' && c <= '9') {
      digits += c;
    } else if (c != '+' && c != ' ' && c != '-' && c != '(' && c != ')' && c != '.') {
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(field), " may hold only digits, '+', spaces and dashes"));
    }
  }
  if (digits.size() < 7 || digits.size() > 15 || digits[0] == '0') {
    return absl::InvalidArgumentError(absl::StrCat(
        Sv(field), " must be an international number: country code and number, 7 to 15 digits"));
  }
  return digits;
}

// At most `watches_per_key` open watches (of events and messages together) per API key.
grpc::Status SessionServiceImpl::WatchStarts(const Caller& caller) {
  absl::MutexLock lock(&watches_mu_);
  int& open = watches_by_key_[caller.key_name];
  if (open >= watch_limits_.per_key) {
    if (metrics_) metrics_->WatcherCutOff("limit");
    return {grpc::StatusCode::RESOURCE_EXHAUSTED,
            absl::StrCat("API key \"", caller.key_name, "\" has ", open,
                         " watches open; the limit is ", watch_limits_.per_key)};
  }
  ++open;
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::CheckVisible(const Caller& caller, const std::string& id) {
  if (caller.all_tenants()) return grpc::Status::OK;
  // GetMany, not Get: looking must not restore another tenant's session.
  auto views = manager_.GetMany({id});
  if (!views.ok()) return ToGrpc(views.status());
  if (!views->empty() && caller.Sees(views->front().record.tenant_id)) return grpc::Status::OK;
  return ToGrpc(NotVisible(caller, "session", id, absl::NotFoundError("")));
}

grpc::Status SessionServiceImpl::CreateSession(grpc::ServerContext* ctx,
                                               const v1::CreateSessionRequest* req,
                                               v1::CreateSessionResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  auto tenant = TenantOfNew(caller, req->tenant_id());
  if (!tenant.ok()) return ToGrpc(tenant.status());
  WAS_GRPC_RETURN_IF_ERROR(CheckTenant(*tenant));
  WAS_GRPC_RETURN_IF_ERROR(CheckNames(req->session_name(), req->account_name()));
  WAS_GRPC_RETURN_IF_ERROR(CheckCreds(req->creds_json(), /*required=*/false));
  WAS_GRPC_RETURN_IF_ERROR(CheckPreKeyFiles(req->pre_key_files(), req->creds_json()));
  WAS_GRPC_RETURN_IF_ERROR(CheckEmail(req->owner_email()));
  NewSession n;
  n.tenant_id = *tenant;
  n.session_name = req->session_name().empty() ? "primary" : req->session_name();
  n.account_name = req->account_name();
  n.owner_email = req->owner_email();
  n.auto_connect = req->has_auto_connect() ? req->auto_connect() : true;
  n.creds_json = req->creds_json();
  n.pre_key_files.insert(req->pre_key_files().begin(), req->pre_key_files().end());
  return Answer(manager_.Create(n), resp);
}

grpc::ServerUnaryReactor* SessionServiceImpl::GetSession(grpc::CallbackServerContext* ctx,
                                                         const v1::GetSessionRequest* req,
                                                         v1::GetSessionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  Caller caller;
  if (auto st = Authorize(ctx, Scope::kRead, &caller); !st.ok()) {
    reactor->Finish(st);
    return reactor;
  }
  if (auto st = CheckSessionId(req->id()); !st.ok()) {
    reactor->Finish(st);
    return reactor;
  }
  // `done` runs on the io thread (held here) or a reader thread (read from the database); the
  // context, request and response live until Finish.
  manager_.GetAsync(req->id(), [this, ctx, req, resp, reactor,
                                caller = std::move(caller)](absl::StatusOr<SessionView> view) {
    // Another tenant's session answers as a missing one does.
    if (!caller.all_tenants() && (!view.ok() ? view.status().code() == absl::StatusCode::kNotFound
                                             : !caller.Sees(view->record.tenant_id))) {
      return reactor->Finish(ToGrpc(NotVisible(caller, "session", req->id(), view.status())));
    }
    // Held by another replica: its live view (unless this call was forwarded here already).
    // Only a reader thread gets here (a session held here is live), so Peer may block.
    auto owner = view.ok() && !view->live ? ForwardTarget(ctx, view->record.owner) : std::nullopt;
    if (!owner) return reactor->Finish(Answer(view, resp));
    auto stub = Peer(*owner);
    if (!stub.ok()) return reactor->Finish(ToGrpc(stub.status()));
    if (metrics_) metrics_->Forwarded("GetSession");
    log_->debug("GetSession: forwarded to replica {}", *owner);
    std::shared_ptr<grpc::ClientContext> client = ForwardContext(ctx);
    (*stub)->async()->GetSession(client.get(), req, resp,
                                 [client, reactor](grpc::Status st) { reactor->Finish(st); });
  });
  return reactor;
}

grpc::Status SessionServiceImpl::ListSessions(grpc::ServerContext* ctx,
                                              const v1::ListSessionsRequest* req,
                                              v1::ListSessionsResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  if (req->page_size() < 0 || req->page_size() > kMaxPageSize) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("page_size must be between 0 and ", kMaxPageSize)};
  }
  WAS_GRPC_RETURN_IF_ERROR(CheckTenantFilter(req->tenant_id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckPageToken(req->page_token()));
  if (req->states_size() > 16) return Invalid("states holds at most 16 states");
  SessionFilter filter;
  auto tenant = TenantFilter(caller, req->tenant_id());
  if (!tenant.ok()) return ToGrpc(tenant.status());
  filter.tenant_id = *tenant;
  for (int s : req->states()) {
    if (!v1::SessionState_IsValid(s) || s == v1::SESSION_STATE_UNSPECIFIED) {
      return {grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("unknown state ", s)};
    }
    filter.states.push_back(static_cast<v1::SessionState>(s));
  }
  auto page = store_.List(filter, req->page_size() ? req->page_size() : kDefaultPageSize,
                          req->page_token());
  if (!page.ok()) return ToGrpc(page.status());
  for (const auto& view : manager_.Overlay(std::move(page->sessions))) {
    *resp->add_sessions() = ToProto(view);
  }
  resp->set_next_page_token(page->next_page_token);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::Connect(grpc::ServerContext* ctx, const v1::ConnectRequest* req,
                                         v1::ConnectResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckVisible(caller, req->id()));
  return Routed(
      ctx, manager_.Connect(req->id()), "Connect", resp,
      [&](auto& stub, auto* client, auto* out) { return stub.Connect(client, *req, out); });
}

grpc::Status SessionServiceImpl::Disconnect(grpc::ServerContext* ctx,
                                            const v1::DisconnectRequest* req,
                                            v1::DisconnectResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckVisible(caller, req->id()));
  return Routed(
      ctx, manager_.Disconnect(req->id()), "Disconnect", resp,
      [&](auto& stub, auto* client, auto* out) { return stub.Disconnect(client, *req, out); });
}

grpc::ServerWriteReactor<v1::SessionEvent>* SessionServiceImpl::WatchSessionEvents(
    grpc::CallbackServerContext* ctx, const v1::WatchSessionEventsRequest* req) {
  auto refuse = [](const grpc::Status& st) { return Refuse<v1::SessionEvent>(st); };
  Caller caller;
  if (auto st = Authorize(ctx, Scope::kRead, &caller); !st.ok()) return refuse(st);
  SessionFilter filter;
  if (!req->session_id().empty()) {
    if (auto st = CheckSessionId(req->session_id(), "session_id"); !st.ok()) return refuse(st);
    if (auto st = CheckVisible(caller, req->session_id()); !st.ok()) return refuse(st);
  }
  if (auto st = CheckTenantFilter(req->tenant_id()); !st.ok()) return refuse(st);
  auto tenant = TenantFilter(caller, req->tenant_id());
  if (!tenant.ok()) return refuse(ToGrpc(tenant.status()));
  filter.session_id = req->session_id();
  filter.tenant_id = *tenant;
  std::optional<int64_t> after;
  if (req->has_after_sequence()) {
    after = req->after_sequence();
    if (*after < 0) return refuse(Invalid("after_sequence must be 0 or more"));
    auto oldest = store_.OldestSequence();
    if (!oldest.ok()) return refuse(ToGrpc(oldest.status()));
    if (*oldest > 0 && *after + 1 < *oldest) {
      return refuse({grpc::StatusCode::OUT_OF_RANGE,
                     absl::StrCat("events up to ", *oldest - 1,
                                  " were pruned; start again from the current state")});
    }
  }
  if (auto st = WatchStarts(caller); !st.ok()) return refuse(st);
  log_->debug("watch from sequence {} (session {}, tenant {})", after.value_or(-1),
              QuoteForLog(filter.session_id), QuoteForLog(filter.tenant_id));
  // Headers at once, so a client knows its watch is in place before the first event arrives;
  // they name the replica serving it and, for a live watch, the last sequence stored once it
  // was subscribed: every later event comes on the stream, so a client that resumes from there
  // (after_sequence) misses none even if it saw none.
  ctx->AddInitialMetadata("x-watch-replica", replica_);
  const bool live = !after.has_value();
  return EventWatch::Start(
      store_, bus_, std::move(filter), after, watch_limits_.buffer,
      [this, key = caller.key_name](bool fell_behind) {
        if (metrics_ && fell_behind) metrics_->WatcherCutOff("behind");
        WatchEnded(key);
      },
      [&] {
        if (!live) return;
        if (auto latest = store_.LatestSequence(); latest.ok()) {
          ctx->AddInitialMetadata("x-watch-after", absl::StrCat(*latest));
        } else {
          log_->warn("watch: the latest event sequence is unknown: {}", latest.status());
        }
      });
}

void SessionServiceImpl::WatchEnded(const std::string& key) {
  bool trim = false;
  {
    absl::MutexLock lock(&watches_mu_);
    if (--watches_by_key_[key] <= 0) watches_by_key_.erase(key);
    // The streams' buffers are freed, but the allocator keeps the pages: after many watches
    // ended (a crowd of stalled watchers cut off), or the last one, they go back to the system.
    trim = ++watches_ended_since_trim_ >= 64 || watches_by_key_.empty();
    if (trim) watches_ended_since_trim_ = 0;
  }
  if (trim) malloc_trim(0);
}

grpc::Status SessionServiceImpl::GetHealth(grpc::ServerContext*, const v1::GetHealthRequest*,
                                           v1::GetHealthResponse* resp) {
  auto counts = store_.CountByState();
  const absl::Time now = absl::Now();
  *resp->mutable_started_at() = ToProto(started_at_);
  *resp->mutable_uptime() = ToProto(now - started_at_);
  if (versions_) {
    resp->set_wa_version(versions_->Current().ToString());
    resp->set_wa_version_source(std::string(VersionKeeper::SourceName(versions_->source())));
  }
  if (!counts.ok()) {
    resp->set_database_reachable(false);
    resp->set_status(v1::OVERALL_STATUS_ERROR);
    return grpc::Status::OK;
  }
  resp->set_database_reachable(true);
  int64_t total = 0, connected = 0;
  for (const auto& [state, n] : *counts) {
    auto* c = resp->add_counts();
    c->set_state(state);
    c->set_count(n);
    total += n;
    if (state == v1::SESSION_STATE_CONNECTED) connected = n;
  }
  resp->set_total_sessions(total);
  resp->set_status(OverallOf(total, connected));
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::GetCaller(grpc::ServerContext* ctx, const v1::GetCallerRequest*,
                                           v1::GetCallerResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kNone, &caller));
  resp->set_key_name(caller.key_name);
  resp->set_scope(std::string(ScopeName(caller.scope)));
  if (caller.Has(Scope::kMessagesRead)) resp->add_message_scopes("messages:read");
  if (caller.Has(Scope::kMessagesSend)) resp->add_message_scopes("messages:send");
  resp->set_tenant_id(caller.tenant);
  resp->set_authentication_enabled(keys_.enabled());
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::BulkGetSessions(grpc::ServerContext* ctx,
                                                 const v1::BulkGetSessionsRequest* req,
                                                 v1::BulkGetSessionsResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  if (req->ids().empty() || req->ids().size() > kMaxPageSize) {
    return Invalid(absl::StrCat("ids holds 1..", kMaxPageSize, " session ids"));
  }
  for (const auto& id : req->ids()) WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(id, "ids"));
  std::vector<std::string> ids(req->ids().begin(), req->ids().end());
  auto views = manager_.GetMany(ids);
  if (!views.ok()) return ToGrpc(views.status());
  absl::flat_hash_map<std::string, const SessionView*> by_id;
  for (const auto& v : *views) {
    // Another tenant's sessions are reported as not found.
    if (caller.Sees(v.record.tenant_id)) by_id[v.record.id] = &v;
  }
  for (const auto& id : ids) {
    if (auto it = by_id.find(id); it != by_id.end()) {
      *resp->add_sessions() = ToProto(*it->second);
    } else {
      resp->add_not_found(id);
    }
  }
  AddMessageTrouble(*resp->mutable_sessions(), ids);
  return grpc::Status::OK;
}

void SessionServiceImpl::AddMessageTrouble(
    google::protobuf::RepeatedPtrField<v1::Session>& sessions,
    const std::vector<std::string>& ids) {
  if (!messages_ || sessions.empty()) return;
  auto trouble = messages_->TroubleSince(absl::Now() - absl::Hours(1), ids);
  if (!trouble.ok()) {
    log_->warn("counting messages in trouble: {}", trouble.status());
    return;
  }
  for (auto& s : sessions) {
    if (auto it = trouble->find(s.id()); it != trouble->end()) {
      s.set_undecryptable_last_hour(it->second.undecryptable);
      s.set_failed_sends_last_hour(it->second.failed_sends);
    }
  }
}

grpc::Status SessionServiceImpl::StartPairing(grpc::ServerContext* ctx,
                                              const v1::StartPairingRequest* req,
                                              grpc::ServerWriter<v1::PairingUpdate>* writer) {
  Caller caller;
  // Pairing a session by id needs operate; naming it by tenant and name may create it, which
  // needs what CreateSession needs.
  WAS_GRPC_RETURN_IF_ERROR(
      Authorize(ctx, req->session_id().empty() ? Scope::kAdmin : Scope::kOperate, &caller));
  PairingRequest p;
  p.session_id = req->session_id();
  if (!p.session_id.empty()) {
    WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(p.session_id, "session_id"));
    WAS_GRPC_RETURN_IF_ERROR(CheckVisible(caller, p.session_id));
  }
  if (p.session_id.empty()) {
    auto tenant = TenantOfNew(caller, req->tenant_id());
    if (!tenant.ok()) return ToGrpc(tenant.status());
    WAS_GRPC_RETURN_IF_ERROR(CheckTenant(*tenant));
    WAS_GRPC_RETURN_IF_ERROR(CheckNames(req->session_name(), req->account_name()));
    WAS_GRPC_RETURN_IF_ERROR(CheckEmail(req->owner_email()));
    p.tenant_id = *tenant;
    p.session_name = req->session_name().empty() ? "primary" : req->session_name();
    p.account_name = req->account_name();
    p.owner_email = req->owner_email();
  }
  if (!req->phone_number().empty()) {
    auto digits = PhoneDigits(req->phone_number(), "phone_number");
    if (!digits.ok()) return ToGrpc(digits.status());
    p.phone_number = *std::move(digits);
  }
  auto feed = std::make_shared<PairingFeed>();
  auto view = manager_.StartPairing(p, feed);
  if (auto owner = ForwardTarget(ctx, view.status())) {
    // The holder pairs; its updates are relayed, and leaving cancels the pairing there.
    return Forward(ctx, *owner, "StartPairing", [&](auto& stub, grpc::ClientContext* client) {
      auto reader = stub.StartPairing(client, *req);
      v1::PairingUpdate u;
      while (reader->Read(&u)) {
        if (!writer->Write(u)) {
          client->TryCancel();
          break;
        }
      }
      return reader->Finish();
    });
  }
  if (!view.ok()) return ToGrpc(view.status());
  const std::string id = view->record.id;
  log_->info("pairing session {} started", id);
  v1::PairingUpdate first;
  *first.mutable_session() = ToProto(*view);
  if (!writer->Write(first)) {
    manager_.CancelPairing(id, feed);
    return grpc::Status::OK;
  }
  while (!ctx->IsCancelled()) {
    auto next = feed->Next(absl::Milliseconds(200));
    if (!next) continue;
    v1::PairingUpdate u;
    using Kind = PairingFeed::Update::Kind;
    switch (next->kind) {
      case Kind::kQr: {
        auto* qr = u.mutable_qr();
        qr->set_code(next->qr);
        *qr->mutable_expires_at() = ToProto(next->expires_at);
        qr->set_index(next->index);
        qr->set_total(next->total);
        break;
      }
      case Kind::kCode:
        u.mutable_pairing_code()->set_code(next->qr);
        *u.mutable_pairing_code()->mutable_expires_at() = ToProto(next->expires_at);
        break;
      case Kind::kSuccess: {
        auto* ok = u.mutable_success();
        const auto& rec = next->session->record;
        ok->set_phone_number(rec.phone_number);
        ok->set_device_jid(next->device.jid);
        ok->set_platform(next->device.platform);
        *ok->mutable_session() = ToProto(*next->session);
        break;
      }
      case Kind::kFailure:
        u.mutable_failure()->set_reason(next->reason);
        u.mutable_failure()->set_message(next->message);
        break;
    }
    if (!writer->Write(u)) break;
    if (next->kind != Kind::kQr && next->kind != Kind::kCode) return grpc::Status::OK;
  }
  log_->info("pairing stream of session {} went away; cancelling the pairing", id);
  manager_.CancelPairing(id, feed);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::Reconnect(grpc::ServerContext* ctx,
                                           const v1::ReconnectRequest* req,
                                           v1::ReconnectResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckVisible(caller, req->id()));
  return Routed(
      ctx, manager_.Reconnect(req->id(), req->recovery()), "Reconnect", resp,
      [&](auto& stub, auto* client, auto* out) { return stub.Reconnect(client, *req, out); });
}

grpc::Status SessionServiceImpl::Logout(grpc::ServerContext* ctx, const v1::LogoutRequest* req,
                                        v1::LogoutResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckVisible(caller, req->id()));
  return Routed(
      ctx, manager_.Logout(req->id()), "Logout", resp,
      [&](auto& stub, auto* client, auto* out) { return stub.Logout(client, *req, out); });
}

grpc::Status SessionServiceImpl::DeleteSession(grpc::ServerContext* ctx,
                                               const v1::DeleteSessionRequest* req,
                                               v1::DeleteSessionResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckVisible(caller, req->id()));
  absl::Status deleted = manager_.Delete(req->id());
  if (auto owner = ForwardTarget(ctx, deleted)) {
    return Forward(ctx, *owner, "DeleteSession", [&](auto& stub, auto* client) {
      return stub.DeleteSession(client, *req, resp);
    });
  }
  return ToGrpc(deleted);
}

grpc::Status SessionServiceImpl::ProbeSession(grpc::ServerContext* ctx,
                                              const v1::ProbeSessionRequest* req,
                                              v1::ProbeSessionResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckVisible(caller, req->id()));
  absl::Duration timeout = absl::Seconds(10);
  if (req->has_timeout()) {
    WAS_GRPC_RETURN_IF_ERROR(
        ToGrpc(CheckDuration("timeout", req->timeout().seconds(), req->timeout().nanos(), 60)));
    timeout = FromProto(req->timeout());
    if (timeout <= absl::ZeroDuration() || timeout > absl::Seconds(60)) {
      return Invalid("timeout must be in (0, 60 s]");
    }
  }
  auto probed = manager_.Probe(req->id(), timeout);
  if (auto owner = ForwardTarget(ctx, probed.status())) {
    return Forward(ctx, *owner, "ProbeSession",
                   [&](auto& stub, auto* client) { return stub.ProbeSession(client, *req, resp); });
  }
  if (!probed.ok()) return ToGrpc(probed.status());
  const auto& [view, result] = *probed;
  resp->set_ok(result.round_trip.ok());
  if (result.round_trip.ok()) {
    *resp->mutable_round_trip() = ToProto(*result.round_trip);
  } else {
    resp->set_error(std::string(result.round_trip.status().message()));
  }
  *resp->mutable_session() = ToProto(view);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::ImportCredentials(grpc::ServerContext* ctx,
                                                   const v1::ImportCredentialsRequest* req,
                                                   v1::ImportCredentialsResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckVisible(caller, req->id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckCreds(req->creds_json(), /*required=*/true));
  return Routed(ctx, manager_.ImportCredentials(req->id(), req->creds_json()), "ImportCredentials",
                resp, [&](auto& stub, auto* client, auto* out) {
                  return stub.ImportCredentials(client, *req, out);
                });
}

grpc::Status SessionServiceImpl::UpdateSession(grpc::ServerContext* ctx,
                                               const v1::UpdateSessionRequest* req,
                                               v1::UpdateSessionResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kOperate, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckSessionId(req->id()));
  WAS_GRPC_RETURN_IF_ERROR(CheckVisible(caller, req->id()));
  SessionUpdate u;
  if (req->has_auto_connect()) u.auto_connect = req->auto_connect();
  if (req->has_is_active()) u.is_active = req->is_active();
  if (req->has_account_name()) {
    WAS_GRPC_RETURN_IF_ERROR(
        ToGrpc(CheckText("account_name", req->account_name(), {.max_bytes = 256})));
    u.account_name = req->account_name();
  }
  if (req->has_owner_email()) {
    WAS_GRPC_RETURN_IF_ERROR(CheckEmail(req->owner_email()));
    u.owner_email = req->owner_email();
  }
  return Routed(
      ctx, manager_.Update(req->id(), u), "UpdateSession", resp,
      [&](auto& stub, auto* client, auto* out) { return stub.UpdateSession(client, *req, out); });
}

grpc::Status SessionServiceImpl::RotateSealingKey(grpc::ServerContext* ctx,
                                                  const v1::RotateSealingKeyRequest*,
                                                  v1::RotateSealingKeyResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kAdmin, &caller));
  WAS_GRPC_RETURN_IF_ERROR(ToGrpc(RequireAllTenants(caller, "rotating the sealing key")));
  auto result = manager_.RotateSealingKey();
  if (!result.ok()) return ToGrpc(result.status());
  resp->set_key_id(result->key_id);
  resp->set_resealed(result->resealed);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::GetDeepHealth(grpc::ServerContext* ctx,
                                               const v1::GetDeepHealthRequest* req,
                                               v1::GetDeepHealthResponse* resp) {
  Caller caller;
  WAS_GRPC_RETURN_IF_ERROR(Authorize(ctx, Scope::kRead, &caller));
  WAS_GRPC_RETURN_IF_ERROR(CheckTenantFilter(req->tenant_id()));
  auto tenant = TenantFilter(caller, req->tenant_id());
  if (!tenant.ok()) return ToGrpc(tenant.status());
  const absl::Time now = absl::Now();
  resp->set_replica(replica_);
  *resp->mutable_started_at() = ToProto(started_at_);
  *resp->mutable_uptime() = ToProto(now - started_at_);
  auto latency = store_.Ping();
  if (!latency.ok()) {
    resp->set_database_reachable(false);
    resp->set_database_error(std::string(latency.status().message()));
    resp->set_status(v1::OVERALL_STATUS_ERROR);
    return grpc::Status::OK;
  }
  resp->set_database_reachable(true);
  *resp->mutable_database_latency() = ToProto(*latency);
  SessionFilter filter;
  filter.tenant_id = *tenant;
  std::string token;
  absl::flat_hash_map<std::string, int> index;  // session id → position in resp
  do {
    auto page = store_.List(filter, kMaxPageSize, token);
    if (!page.ok()) return ToGrpc(page.status());
    for (const auto& view : manager_.Overlay(std::move(page->sessions))) {
      index[view.record.id] = resp->sessions_size();
      *resp->add_sessions() = ToProto(view);
    }
    token = page->next_page_token;
  } while (!token.empty());
  // The live facts of sessions held by other replicas come from those replicas.
  if (Metadata(ctx, kForwardedBy).empty()) {
    auto replicas = store_.LiveReplicas();
    for (const auto& r : replicas.ok() ? *replicas : std::vector<ReplicaInfo>{}) {
      if (r.id == replica_) continue;
      v1::GetDeepHealthResponse theirs;
      grpc::Status st = Forward(ctx, r.id, "GetDeepHealth", [&](auto& stub, auto* client) {
        return stub.GetDeepHealth(client, *req, &theirs);
      });
      if (!st.ok()) {
        log_->warn("deep health: replica {} did not answer: {}", r.id, st.error_message());
        continue;
      }
      for (const auto& s : theirs.sessions()) {
        auto it = index.find(s.id());
        if (s.owner() == r.id && it != index.end()) *resp->mutable_sessions(it->second) = s;
      }
    }
  }
  // Counted once, by the replica asked first, over every session.
  if (Metadata(ctx, kForwardedBy).empty()) AddMessageTrouble(*resp->mutable_sessions());
  int64_t connected = 0;
  for (const auto& s : resp->sessions()) connected += s.state() == v1::SESSION_STATE_CONNECTED;
  resp->set_status(OverallOf(resp->sessions_size(), connected));
  return grpc::Status::OK;
}

}  // namespace wasentinel::session
