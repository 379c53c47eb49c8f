#include "session_service.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::session {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp Ts(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

constexpr int kMaxPageSize = 500;
constexpr int kDefaultPageSize = 100;

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

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
  if (r.last_connected_at) *s.mutable_last_connected_at() = Ts(*r.last_connected_at);
  if (r.last_disconnected_at) *s.mutable_last_disconnected_at() = Ts(*r.last_disconnected_at);
  *s.mutable_created_at() = Ts(r.created_at);
  *s.mutable_updated_at() = Ts(r.updated_at);
  s.set_reconnect_count(r.reconnect_count);
  s.set_error_count(r.error_count);
  if (const auto& live = view.live) {
    // This process's view is newer than the row: transitions are written behind it.
    s.set_state(live->state);
    s.set_reason(live->reason);
    if (!live->last_error.empty()) s.set_last_error(live->last_error);
    s.set_socket_alive(live->socket_alive);
    s.set_inbound_messages(live->inbound_messages);
    if (live->last_inbound_at) *s.mutable_last_inbound_message_at() = Ts(*live->last_inbound_at);
    if (live->last_pong_at) *s.mutable_last_pong_at() = Ts(*live->last_pong_at);
    if (live->keepalive_rtt) {
      *s.mutable_keepalive_rtt() =
          TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(*live->keepalive_rtt));
    }
  }
  return s;
}

SessionServiceImpl::SessionServiceImpl(SessionManager& manager, SessionStore& store, EventBus& bus,
                                       std::shared_ptr<spdlog::logger> log)
    : manager_(manager), store_(store), bus_(bus), log_(std::move(log)), started_at_(absl::Now()) {}

grpc::Status SessionServiceImpl::CreateSession(grpc::ServerContext*,
                                               const v1::CreateSessionRequest* req,
                                               v1::CreateSessionResponse* resp) {
  if (req->tenant_id().empty() || req->tenant_id().size() > 128) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "tenant_id is required (1..128 characters)"};
  }
  if (req->session_name().size() > 64) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "session_name is at most 64 characters"};
  }
  if (req->creds_json().empty()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "creds_json is required (a Baileys creds.json)"};
  }
  if (req->creds_json().size() > 1 << 20) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "creds_json is larger than 1 MiB"};
  }
  if (!req->owner_email().empty() && req->owner_email().find('@') == std::string::npos) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "owner_email is not an e-mail address"};
  }
  NewSession n;
  n.tenant_id = req->tenant_id();
  n.session_name = req->session_name().empty() ? "primary" : req->session_name();
  n.account_name = req->account_name();
  n.owner_email = req->owner_email();
  n.auto_connect = req->has_auto_connect() ? req->auto_connect() : true;
  n.creds_json = req->creds_json();
  auto view = manager_.Create(n);
  if (!view.ok()) return ToGrpc(view.status());
  *resp->mutable_session() = ToProto(*view);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::GetSession(grpc::ServerContext*, const v1::GetSessionRequest* req,
                                            v1::GetSessionResponse* resp) {
  auto view = manager_.Get(req->id());
  if (!view.ok()) return ToGrpc(view.status());
  *resp->mutable_session() = ToProto(*view);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::ListSessions(grpc::ServerContext*,
                                              const v1::ListSessionsRequest* req,
                                              v1::ListSessionsResponse* resp) {
  if (req->page_size() < 0 || req->page_size() > kMaxPageSize) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("page_size must be between 0 and ", kMaxPageSize)};
  }
  SessionFilter filter;
  filter.tenant_id = req->tenant_id();
  for (int s : req->states()) {
    if (!v1::SessionState_IsValid(s) || s == v1::SESSION_STATE_UNSPECIFIED) {
      return {grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("unknown state ", s)};
    }
    filter.states.push_back(static_cast<v1::SessionState>(s));
  }
  auto page = store_.List(filter, req->page_size() ? req->page_size() : kDefaultPageSize,
                          req->page_token());
  if (!page.ok()) return ToGrpc(page.status());
  std::vector<std::string> ids;
  for (const auto& r : page->sessions) ids.push_back(r.id);
  auto live = manager_.LiveInfos(ids);
  for (size_t i = 0; i < page->sessions.size(); ++i) {
    *resp->add_sessions() = ToProto(SessionView{page->sessions[i], live[i]});
  }
  resp->set_next_page_token(page->next_page_token);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::Connect(grpc::ServerContext*, const v1::ConnectRequest* req,
                                         v1::ConnectResponse* resp) {
  auto view = manager_.Connect(req->id());
  if (!view.ok()) return ToGrpc(view.status());
  *resp->mutable_session() = ToProto(*view);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::Disconnect(grpc::ServerContext*, const v1::DisconnectRequest* req,
                                            v1::DisconnectResponse* resp) {
  auto view = manager_.Disconnect(req->id());
  if (!view.ok()) return ToGrpc(view.status());
  *resp->mutable_session() = ToProto(*view);
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::WatchSessionEvents(grpc::ServerContext* ctx,
                                                    const v1::WatchSessionEventsRequest* req,
                                                    grpc::ServerWriter<v1::SessionEvent>* writer) {
  SessionFilter filter;
  filter.session_id = req->session_id();
  filter.tenant_id = req->tenant_id();
  // Subscribe before reading the backlog, so nothing falls between the two.
  auto sub = bus_.Subscribe(filter);
  auto send = [&](const EventRecord& e) {
    v1::SessionEvent ev;
    ev.set_sequence(e.sequence);
    ev.set_session_id(e.session_id);
    ev.set_tenant_id(e.tenant_id);
    ev.set_from_state(e.from);
    ev.set_to_state(e.to);
    ev.set_reason(e.reason);
    ev.set_error(e.error);
    *ev.mutable_at() = Ts(e.at);
    return writer->Write(ev);
  };
  int64_t last = 0;
  if (req->has_after_sequence()) {
    last = req->after_sequence();
    auto oldest = store_.OldestSequence();
    if (!oldest.ok()) return ToGrpc(oldest.status());
    if (*oldest > 0 && last + 1 < *oldest) {
      return {grpc::StatusCode::OUT_OF_RANGE,
              absl::StrCat("events up to ", *oldest - 1,
                           " were pruned; start again from the current state")};
    }
    for (;;) {
      auto batch = store_.EventsAfter(last, filter, 500);
      if (!batch.ok()) return ToGrpc(batch.status());
      for (const auto& e : *batch) {
        if (!send(e)) return grpc::Status::OK;
        last = e.sequence;
      }
      if (batch->size() < 500) break;
    }
  } else {
    auto latest = store_.LatestSequence();
    if (!latest.ok()) return ToGrpc(latest.status());
    last = *latest;
  }
  log_->debug("watch from sequence {} (session '{}', tenant '{}')", last, filter.session_id,
              filter.tenant_id);
  while (!ctx->IsCancelled()) {
    auto next = sub->Next(absl::Milliseconds(500));
    if (!next.ok()) return ToGrpc(next.status());
    if (!next->has_value()) continue;
    const EventRecord& e = **next;
    if (e.sequence <= last) continue;  // already replayed
    if (!send(e)) break;
    last = e.sequence;
  }
  return grpc::Status::OK;
}

grpc::Status SessionServiceImpl::GetHealth(grpc::ServerContext*, const v1::GetHealthRequest*,
                                           v1::GetHealthResponse* resp) {
  auto counts = store_.CountByState();
  const absl::Time now = absl::Now();
  *resp->mutable_started_at() = Ts(started_at_);
  *resp->mutable_uptime() =
      TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(now - started_at_));
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
  // architecture.md "Health": ERROR when sessions exist and none is connected; DEGRADED when
  // some are not.
  if (total > 0 && connected == 0) {
    resp->set_status(v1::OVERALL_STATUS_ERROR);
  } else if (connected < total) {
    resp->set_status(v1::OVERALL_STATUS_DEGRADED);
  } else {
    resp->set_status(v1::OVERALL_STATUS_OK);
  }
  return grpc::Status::OK;
}

}  // namespace wasentinel::session
