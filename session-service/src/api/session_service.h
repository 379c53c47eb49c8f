// gRPC wasentinel.session.v1.SessionService over the SessionManager
// (protos/wasentinel/session/v1/session.proto; README "gRPC API").
// Maps absl::Status to grpc::Status at the edge; validates requests (INVALID_ARGUMENT); checks
// each call's API key scope (UNAUTHENTICATED / PERMISSION_DENIED) before anything else.
//
// Replicas: a call about a session another replica holds (the manager answers OwnerOf) is
// forwarded to that replica with the caller's credentials and deadline, once: a forwarded call
// is never forwarded again, so a session changing hands answers UNAVAILABLE (retry) instead of
// bouncing. Reads of many sessions (List, BulkGet) answer from the database, with live facts
// for the sessions held here; GetDeepHealth gathers the live facts of every replica.
#pragma once

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "event_bus.h"
#include "manager.h"
#include "message_watch.h"
#include "metrics.h"
#include "pg_message_store.h"
#include "version_keeper.h"
#include "wasentinel/common/api_keys.h"
#include "wasentinel/session/v1/session.grpc.pb.h"

namespace wasentinel::session {

// GetSession, the hot read, is a callback method: answered on the io thread (or a reader
// thread) without holding a gRPC thread; the rest are synchronous.
/// What watchers (WatchSessionEvents) may cost (README "Configuration", session-service).
struct WatchLimits {
  /// Events one watcher may fall behind before its stream ends RESOURCE_EXHAUSTED.
  size_t buffer = 1000;
  /// Watches open at once per API key (all anonymous callers count as one key).
  int per_key = 100;
};

class SessionServiceImpl final
    : public v1::SessionService::WithCallbackMethod_GetSession<
          v1::SessionService::WithCallbackMethod_WatchSessionEvents<
              v1::SessionService::WithCallbackMethod_WatchMessages<v1::SessionService::Service>>> {
 public:
  /// `peers`: the channel credentials for calls to other replicas (forwarding).
  SessionServiceImpl(SessionManager& manager, SessionStore& store, EventBus& bus,
                     const ApiKeys& keys, std::string replica, std::shared_ptr<spdlog::logger> log,
                     std::shared_ptr<grpc::ChannelCredentials> peers = nullptr,
                     SessionMetrics* metrics = nullptr, WatchLimits watch_limits = {});

  grpc::Status CreateSession(grpc::ServerContext*, const v1::CreateSessionRequest*,
                             v1::CreateSessionResponse*) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext*, const v1::GetSessionRequest*,
                                       v1::GetSessionResponse*) override;
  grpc::Status ListSessions(grpc::ServerContext*, const v1::ListSessionsRequest*,
                            v1::ListSessionsResponse*) override;
  grpc::Status Connect(grpc::ServerContext*, const v1::ConnectRequest*,
                       v1::ConnectResponse*) override;
  grpc::Status Disconnect(grpc::ServerContext*, const v1::DisconnectRequest*,
                          v1::DisconnectResponse*) override;
  /// A callback stream (event_watch.h): no thread per watcher.
  grpc::ServerWriteReactor<v1::SessionEvent>* WatchSessionEvents(
      grpc::CallbackServerContext*, const v1::WatchSessionEventsRequest*) override;
  grpc::Status GetHealth(grpc::ServerContext*, const v1::GetHealthRequest*,
                         v1::GetHealthResponse*) override;
  grpc::Status GetCaller(grpc::ServerContext*, const v1::GetCallerRequest*,
                         v1::GetCallerResponse*) override;
  grpc::Status BulkGetSessions(grpc::ServerContext*, const v1::BulkGetSessionsRequest*,
                               v1::BulkGetSessionsResponse*) override;
  grpc::Status StartPairing(grpc::ServerContext*, const v1::StartPairingRequest*,
                            grpc::ServerWriter<v1::PairingUpdate>*) override;
  grpc::Status Reconnect(grpc::ServerContext*, const v1::ReconnectRequest*,
                         v1::ReconnectResponse*) override;
  grpc::Status Logout(grpc::ServerContext*, const v1::LogoutRequest*, v1::LogoutResponse*) override;
  grpc::Status DeleteSession(grpc::ServerContext*, const v1::DeleteSessionRequest*,
                             v1::DeleteSessionResponse*) override;
  grpc::Status ProbeSession(grpc::ServerContext*, const v1::ProbeSessionRequest*,
                            v1::ProbeSessionResponse*) override;
  grpc::Status ImportCredentials(grpc::ServerContext*, const v1::ImportCredentialsRequest*,
                                 v1::ImportCredentialsResponse*) override;
  grpc::Status UpdateSession(grpc::ServerContext*, const v1::UpdateSessionRequest*,
                             v1::UpdateSessionResponse*) override;
  grpc::Status RotateSealingKey(grpc::ServerContext*, const v1::RotateSealingKeyRequest*,
                                v1::RotateSealingKeyResponse*) override;
  grpc::Status GetDeepHealth(grpc::ServerContext*, const v1::GetDeepHealthRequest*,
                             v1::GetDeepHealthResponse*) override;

  // Messages (message_calls.cc).
  grpc::Status SendMessage(grpc::ServerContext*, const v1::SendMessageRequest*,
                           v1::SendMessageResponse*) override;
  grpc::Status GetMessage(grpc::ServerContext*, const v1::GetMessageRequest*,
                          v1::GetMessageResponse*) override;
  grpc::Status ListMessages(grpc::ServerContext*, const v1::ListMessagesRequest*,
                            v1::ListMessagesResponse*) override;
  grpc::Status MarkRead(grpc::ServerContext*, const v1::MarkReadRequest*,
                        v1::MarkReadResponse*) override;
  /// A callback stream over the message log (message_watch.h).
  grpc::ServerWriteReactor<v1::Message>* WatchMessages(grpc::CallbackServerContext*,
                                                       const v1::WatchMessagesRequest*) override;

  /// The message calls read and queue through `messages` and watches wake from `feed` (not
  /// owned). Unset: they answer UNIMPLEMENTED.
  void set_messages(PgMessageStore* messages, MessageFeed* feed) {
    messages_ = messages;
    feed_ = feed;
  }

  /// GetHealth names the WhatsApp Web version this keeper announces (not owned; may be unset).
  void set_versions(const VersionKeeper* versions) { versions_ = versions; }

 private:
  // UNAUTHENTICATED / PERMISSION_DENIED unless the call's key has `scope`; the caller in
  // `caller` when given.
  grpc::Status Authorize(grpc::ServerContextBase* ctx, Scope scope, Caller* caller = nullptr) const;
  // The session a message call names, for `caller`: INVALID_ARGUMENT for a malformed id,
  // NOT_FOUND (or, for a tenant key, PERMISSION_DENIED) when it is not there.
  grpc::Status MessageSession(const Caller& caller, const std::string& id, SessionRecord* out);
  // A watch of `caller`'s key starts: RESOURCE_EXHAUSTED when the key has its limit of
  // watches open, else counted (WatchEnded counts it down).
  grpc::Status WatchStarts(const Caller& caller);
  // A watch of `key` ended: its count goes down, and memory goes back now and then.
  void WatchEnded(const std::string& key);
  // For a tenant key: PERMISSION_DENIED unless session `id` exists and is its tenant's (the
  // same answer either way: api_keys.h NotVisible).
  grpc::Status CheckVisible(const Caller& caller, const std::string& id);

  // Sets each session's undecryptable_last_hour and failed_sends_last_hour (of `ids`; empty:
  // counted over every session). Logged and left at 0 when the database does not answer.
  void AddMessageTrouble(google::protobuf::RepeatedPtrField<v1::Session>& sessions,
                         const std::vector<std::string>& ids = {});
  // The stub of replica `id` (its address from the replica set). UNAVAILABLE when unknown.
  absl::StatusOr<v1::SessionService::Stub*> Peer(const std::string& id);
  // A client context for a call forwarded on behalf of `ctx`: its API key, its deadline (at
  // most 60 s) and cancellation, and the mark that stops a second forward.
  std::unique_ptr<grpc::ClientContext> ForwardContext(grpc::ServerContext* ctx) const;
  std::unique_ptr<grpc::ClientContext> ForwardContext(grpc::CallbackServerContext* ctx) const;
  std::unique_ptr<grpc::ClientContext> Forwarding(grpc::ServerContextBase* ctx,
                                                  std::unique_ptr<grpc::ClientContext> out) const;
  // `status` names another replica as the holder and this call was not forwarded already.
  std::optional<std::string> ForwardTarget(grpc::ServerContextBase* ctx,
                                           const absl::Status& status) const;
  // `owner` is another replica and this call was not forwarded already.
  std::optional<std::string> ForwardTarget(grpc::ServerContextBase* ctx,
                                           const std::string& owner) const;
  // Runs `call(stub, client_context)` on the holder `owner`.
  template <class Call>
  grpc::Status Forward(grpc::ServerContext* ctx, const std::string& owner, const char* method,
                       Call call);
  // Answers `view`, or forwards the call when another replica holds the session.
  template <class Resp, class Call>
  grpc::Status Routed(grpc::ServerContext* ctx, const absl::StatusOr<SessionView>& view,
                      const char* method, Resp* resp, Call call);

  SessionManager& manager_;
  SessionStore& store_;
  EventBus& bus_;
  const ApiKeys& keys_;
  const std::string replica_;
  std::shared_ptr<spdlog::logger> log_;
  const absl::Time started_at_;
  const VersionKeeper* versions_ = nullptr;
  PgMessageStore* messages_ = nullptr;
  MessageFeed* feed_ = nullptr;
  std::shared_ptr<grpc::ChannelCredentials> peers_;
  SessionMetrics* metrics_;
  absl::Mutex peers_mu_;
  struct PeerStub {
    std::string address;
    std::unique_ptr<v1::SessionService::Stub> stub;
  };
  absl::flat_hash_map<std::string, PeerStub> peer_stubs_ ABSL_GUARDED_BY(peers_mu_);
  const WatchLimits watch_limits_;
  absl::Mutex watches_mu_;
  absl::flat_hash_map<std::string, int> watches_by_key_ ABSL_GUARDED_BY(watches_mu_);
  int watches_ended_since_trim_ ABSL_GUARDED_BY(watches_mu_) = 0;
};

/// An E.164 number as people write it ("+49 151 2345-6789") → its digits. INVALID_ARGUMENT,
/// naming `field`, unless 7 to 15 digits with no leading 0 remain of digits, '+', spaces,
/// dashes, dots and parentheses.
absl::StatusOr<std::string> PhoneDigits(std::string_view phone, std::string_view field);

/// The API form of a session: the stored row overlaid with what this process knows live.
v1::Session ToProto(const SessionView& view);

}  // namespace wasentinel::session
