// The console's gRPC side: every gRPC-Web call a browser makes is forwarded, as it is, to the
// service that owns its package, through grpc::GenericStub — no per-method code, so a method
// added to protos/ works in the console as soon as the service has it. Each call is started as
// a bidi-streaming call that writes the one request message and half-closes; that serves unary
// and server-streaming methods alike (README "Console").
//
// Flow control: one response message is in the sink's hands at a time; the next is read from
// the service only when the sink says the last one is written (CallSink::OnMessage's `next`),
// so a slow browser holds back its own stream, never the bridge's memory.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"

namespace wasentinel::console {

using Metadata = std::vector<std::pair<std::string, std::string>>;

/// A service the bridge forwards to.
struct Upstream {
  std::string name;     ///< "session-service": in metrics, logs and the errors the bridge makes
  std::string package;  ///< "wasentinel.session.v1": services of this package are forwarded here
  std::shared_ptr<grpc::ChannelInterface> channel;
};

/// Receives what a forwarded call answers. Called on gRPC's callback threads, one at a time, in
/// the call's order: OnHeaders once the service sent its initial metadata (always before the
/// first message; never for a call that ends without any), OnMessage zero or more times, then
/// OnDone once. Metadata keys are lower-case; `-bin` values base64, as gRPC-Web carries them.
class CallSink {
 public:
  virtual ~CallSink() = default;
  /// The service's initial metadata: the call is in place at the service (WatchSessionEvents
  /// sends it once its watch is registered, before any event).
  virtual void OnHeaders(Metadata initial) = 0;
  /// One response message (serialized protobuf). Call `next()` once it is written, from any
  /// thread, to have the following one read; a sink that stops calling it stalls the call until
  /// it is cancelled.
  virtual void OnMessage(std::string message, absl::AnyInvocable<void() &&> next) = 0;
  /// The call's end: its status and the service's trailing metadata (with the initial metadata
  /// in front when OnHeaders was never called).
  virtual void OnDone(const grpc::Status& status, Metadata metadata) = 0;
};

/// A call under way; Cancel() ends it (the sink's OnDone follows with CANCELLED).
class CallHandle {
 public:
  virtual ~CallHandle() = default;
  virtual void Cancel() = 0;
};

/// One call to forward.
struct ForwardedRequest {
  std::string method;                     ///< "/wasentinel.session.v1.SessionService/GetSession"
  std::string message;                    ///< the serialized request message
  Metadata metadata;                      ///< forwarded as the call's metadata (x-api-key, …)
  std::optional<absl::Duration> timeout;  ///< from grpc-timeout; none: no deadline
};

class GrpcBridge {
 public:
  explicit GrpcBridge(std::vector<Upstream> upstreams);

  /// The upstream of `method` ("/package.Service/Method"): the one whose package is the
  /// service's; nullptr for a method of no known package or a malformed name (the HTTP side
  /// answers UNIMPLEMENTED).
  const Upstream* Route(std::string_view method) const;

  /// Starts `request` on `upstream`; `sink` is told of every response message, then of the end.
  std::shared_ptr<CallHandle> Start(const Upstream& upstream, ForwardedRequest request,
                                    std::shared_ptr<CallSink> sink);

  const std::vector<Upstream>& upstreams() const { return upstreams_; }

 private:
  std::vector<Upstream> upstreams_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;  // one per upstream, same order
};

/// gRPC-Web's `grpc-timeout` header ("<1 to 8 digits><H|M|S|m|u|n>", gRPC over HTTP/2
/// "Requests"); nullopt when malformed.
std::optional<absl::Duration> ParseGrpcTimeout(std::string_view value);

}  // namespace wasentinel::console
