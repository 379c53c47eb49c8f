// The console's HTTP server (Boost.Beast, HTTP/1.1): the web app's files, the probes, and the
// gRPC-Web bridge (grpc_web.h for the framing, grpc_bridge.h for the forwarding). README
// "Console" describes what a deployment sees; the routes are:
//
//   POST /<package>.<Service>/<Method>   gRPC-Web (application/grpc-web[-text][+proto]); the
//                                        answer is HTTP 200 with the messages and a trailers
//                                        frame, or a trailers-only answer (grpc-status in the
//                                        HTTP headers) for a call the bridge refuses itself
//   GET  /healthz                        liveness: 200 while the process serves
//   GET  /readyz                         readiness: 200 once the web app's index.html is there
//   GET  /<file>                         the web app (hashed assets cached for a year)
//   GET  /<route without a dot>          index.html: the app's own routes (/sessions/<id>)
//
// Every answer carries a strict Content-Security-Policy (scripts, styles and calls from this
// origin only, no inline script). A gRPC-Web call whose Origin is neither this host nor one of
// `allowed_origins` is refused (PERMISSION_DENIED); listed origins get CORS headers, for pages
// that embed the status components (README "Console" › "Embedding the status dot").
//
// Limits, each answered with a gRPC status, never by dropping the connection silently: a
// request message over `max_message_bytes` (RESOURCE_EXHAUSTED), more than
// `max_calls_per_client` calls open from one address (RESOURCE_EXHAUSTED), a body that is not
// gRPC-Web (INVALID_ARGUMENT), a method of no known service (UNIMPLEMENTED).
#pragma once

#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc_bridge.h"

namespace spdlog {
class logger;
}

namespace wasentinel::console {

struct ServerOptions {
  /// "host:port" (port 0 picks one).
  std::string listen = "0.0.0.0:8080";
  /// The built web app: index.html and assets/. Empty: only the bridge and probes.
  std::string web_root;
  /// The largest request message a call may carry, in bytes (decoded).
  size_t max_message_bytes = 1 << 20;
  /// gRPC-Web calls open at once from one client address.
  int max_calls_per_client = 32;
  /// Connections open at once; beyond, new ones are closed at accept.
  int max_connections = 4096;
  /// Origins ("https://shop.example") whose pages may call the bridge (CORS).
  std::vector<std::string> allowed_origins;
  /// Threads running the HTTP side.
  int threads = 2;
  /// How long a connection may sit without a request, and a request take to arrive.
  absl::Duration idle_timeout = absl::Seconds(60);
};

class ConsoleServer {
 public:
  /// Binds `options.listen` and starts serving; UNAVAILABLE when the address cannot be bound.
  /// `bridge`, `registry` and `log` must outlive the server.
  static absl::StatusOr<std::unique_ptr<ConsoleServer>> Start(const ServerOptions& options,
                                                              GrpcBridge& bridge,
                                                              prometheus::Registry& registry,
                                                              std::shared_ptr<spdlog::logger> log);
  /// Stop(absl::ZeroDuration()) if not stopped.
  ~ConsoleServer();

  /// Stops accepting, cancels the calls still open (their browsers see CANCELLED) and waits for
  /// them up to `drain`, then stops the threads. Once; later calls do nothing.
  void Stop(absl::Duration drain);

  int port() const;

  class Impl;

 private:
  explicit ConsoleServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace wasentinel::console
