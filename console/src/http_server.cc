#include "http_server.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <limits>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpc_web.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::console {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using net::awaitable;
using net::use_awaitable;
using tcp = net::ip::tcp;

// What a page of this origin may load and call: its own files and its own origin, nothing
// inline, nothing framed. data: images are the favicon the app redraws red while a session is
// critical.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'";

// Request headers a browser may send with a call and the bridge forwards as metadata. Nothing
// else of the HTTP request reaches the services.
constexpr std::string_view kForwardedHeaders[] = {"x-api-key", "authorization"};
constexpr char kAllowedRequestHeaders[] =
    "content-type, x-api-key, authorization, x-grpc-web, x-user-agent, grpc-timeout";

constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr size_t kHeaderLimit = 16 * 1024;
// A refused body up to this size is read and dropped so that its client can read the answer.
constexpr size_t kDrainLimit = 16 << 20;

std::string_view MimeType(std::string_view path) {
  static const std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".map", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
      {".woff2", "font/woff2"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (path.ends_with(ext)) return type;
  }
  return "application/octet-stream";
}

// The host[:port] of an Origin header ("https://console.example:8443" → "console.example:8443").
std::string_view OriginHost(std::string_view origin) {
  const size_t scheme = origin.find("://");
  return scheme == std::string_view::npos ? std::string_view() : origin.substr(scheme + 3);
}

// "RESOURCE_EXHAUSTED": the code's name, as the services' own call metrics label it.
std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace

class ConsoleServer::Impl {
 public:
  Impl(ServerOptions options, GrpcBridge& bridge, prometheus::Registry& registry,
       std::shared_ptr<spdlog::logger> log);

  absl::Status Listen();
  void Run();
  void Stop(absl::Duration drain);
  int port() const { return port_; }

 private:
  // What a forwarded call hands the connection's coroutine: the service's initial metadata, at
  // most one message at a time, then the end. Filled on gRPC's threads; the coroutine is woken
  // through `wake` on its strand.
  class CallState final : public CallSink, public std::enable_shared_from_this<CallState> {
   public:
    CallState(const net::any_io_executor& executor, Impl& server)
        : wake(executor), server_(server) {}

    void OnHeaders(Metadata initial) override {
      {
        absl::MutexLock lock(&mu);
        headers = std::move(initial);
      }
      Notify();
    }
    void OnMessage(std::string message, absl::AnyInvocable<void() &&> next) override {
      {
        absl::MutexLock lock(&mu);
        this->message = std::move(message);
        this->next = std::move(next);
      }
      Notify();
    }
    void OnDone(const grpc::Status& status, Metadata metadata) override {
      {
        absl::MutexLock lock(&mu);
        this->status = status;
        this->metadata = std::move(metadata);
        done = true;
      }
      Notify();
      server_.CallFinished();
    }

    absl::Mutex mu;
    std::optional<Metadata> headers ABSL_GUARDED_BY(mu);
    std::optional<std::string> message ABSL_GUARDED_BY(mu);
    absl::AnyInvocable<void() &&> next ABSL_GUARDED_BY(mu);
    bool done ABSL_GUARDED_BY(mu) = false;
    grpc::Status status ABSL_GUARDED_BY(mu);
    Metadata metadata ABSL_GUARDED_BY(mu);
    net::steady_timer wake;  // used on the connection's strand only

   private:
    void Notify() {
      net::post(wake.get_executor(), [self = shared_from_this()] { self->wake.cancel(); });
    }
    Impl& server_;
  };

  // A call the bridge answers itself, and why (the console_grpc_web_refused_total label).
  struct Refusal {
    grpc::StatusCode code;
    std::string message;
    std::string reason;
  };

  awaitable<void> Accept();
  awaitable<void> Serve(tcp::socket socket);
  // One gRPC-Web request whose header is read; answers false when the connection must close.
  awaitable<bool> ServeCall(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                            http::request_parser<http::string_body>& parser,
                            const std::string& client);
  awaitable<bool> ServeFile(beast::tcp_stream& stream, const http::request<http::string_body>& req);
  // What the call forwards and where, or why it is refused: route, message, metadata, timeout.
  std::optional<Refusal> Prepare(const http::request<http::string_body>& req, WireFormat format,
                                 const std::string& method, const Upstream*& upstream,
                                 ForwardedRequest& forwarded) const;
  // A call the bridge refuses: counted, then answered trailers-only; the connection closes
  // after it (the request's body may be unread).
  awaitable<void> WriteRefusal(beast::tcp_stream& stream,
                               const http::request<http::string_body>& req, WireFormat format,
                               const Refusal& refusal);
  // A trailers-only answer: the status and `metadata` in the HTTP headers, no body.
  awaitable<void> WriteTrailersOnly(beast::tcp_stream& stream,
                                    const http::request<http::string_body>& req, WireFormat format,
                                    const grpc::Status& status, const Metadata& metadata,
                                    bool keep_alive);

  // The CORS headers of an allowed foreign origin; false when the request's Origin is neither
  // this host nor allowed.
  bool OriginAllowed(const http::request<http::string_body>& req, bool& cross_origin) const;
  template <class Response>
  void SetCommonHeaders(Response& res, const http::request<http::string_body>& req) const;

  // Counts a call against `client`'s limit; a refusal when it is over the limit or the server
  // is stopping.
  std::optional<Refusal> AcquireCall(const std::string& client);
  void ReleaseCall(const std::string& client);
  void CallFinished();

  ServerOptions options_;
  GrpcBridge& bridge_;
  std::shared_ptr<spdlog::logger> log_;
  net::io_context ioc_;
  // On a strand of its own: Accept() runs there and Stop() closes it there, never at once.
  tcp::acceptor acceptor_{net::make_strand(ioc_)};
  int port_ = 0;
  std::vector<std::thread> threads_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> calls_per_client_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::shared_ptr<CallHandle>> calls_ ABSL_GUARDED_BY(mu_);
  int forwarded_outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // started, OnDone not yet seen
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& calls_total_;
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Gauge& calls_open_;
  prometheus::Gauge& connections_open_;
  prometheus::Histogram& unary_seconds_;
};

ConsoleServer::Impl::Impl(ServerOptions options, GrpcBridge& bridge, prometheus::Registry& registry,
                          std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)),
      bridge_(bridge),
      log_(std::move(log)),
      requests_(prometheus::BuildCounter()
                    .Name("console_http_requests_total")
                    .Help("HTTP requests answered, by route (file, probe, grpc_web, other) and "
                          "HTTP status")
                    .Register(registry)),
      calls_total_(prometheus::BuildCounter()
                       .Name("console_grpc_web_calls_total")
                       .Help("gRPC-Web calls ended, by upstream service and gRPC status code")
                       .Register(registry)),
      refused_(prometheus::BuildCounter()
                   .Name("console_grpc_web_refused_total")
                   .Help("gRPC-Web calls the bridge refused itself, by reason")
                   .Register(registry)),
      calls_open_(prometheus::BuildGauge()
                      .Name("console_grpc_web_calls_open")
                      .Help("gRPC-Web calls under way (streams included)")
                      .Register(registry)
                      .Add({})),
      connections_open_(prometheus::BuildGauge()
                            .Name("console_http_connections_open")
                            .Help("HTTP connections open")
                            .Register(registry)
                            .Add({})),
      unary_seconds_(prometheus::BuildHistogram()
                         .Name("console_grpc_web_call_seconds")
                         .Help("time from a gRPC-Web request's body to its trailers, calls "
                               "that answered at most one message")
                         .Register(registry)
                         .Add({}, prometheus::Histogram::BucketBoundaries{
                                      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                      2.5, 5, 10})) {}

absl::Status ConsoleServer::Impl::Listen() {
  const size_t colon = options_.listen.rfind(':');
  std::string host = options_.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(options_.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address ", options_.listen, " is not host:port"));
  }
  boost::system::error_code ec;
  const auto address = net::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address ", options_.listen, ": the host must be an IP address"));
  }
  const tcp::endpoint ep(address, static_cast<uint16_t>(port));
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("console cannot listen on ", options_.listen, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  return absl::OkStatus();
}

void ConsoleServer::Impl::Run() {
  net::co_spawn(acceptor_.get_executor(), Accept(), net::detached);
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.emplace_back([this] { ioc_.run(); });
  }
}

void ConsoleServer::Impl::Stop(absl::Duration drain) {
  std::vector<std::shared_ptr<CallHandle>> open;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    open.assign(calls_.begin(), calls_.end());
  }
  net::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
  for (auto& call : open) call->Cancel();
  {
    // A cancelled call always ends (OnDone); until it has, its sink may still post to the
    // threads, so they run until then.
    absl::MutexLock lock(&mu_);
    auto drained = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return forwarded_outstanding_ == 0; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&drained), drain)) {
      log_->warn("console: {} forwarded calls still open after the drain; waiting for them",
                 forwarded_outstanding_);
      mu_.Await(absl::Condition(&drained));
    }
  }
  ioc_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void ConsoleServer::Impl::CallFinished() {
  absl::MutexLock lock(&mu_);
  --forwarded_outstanding_;
}

std::optional<ConsoleServer::Impl::Refusal> ConsoleServer::Impl::AcquireCall(
    const std::string& client) {
  absl::MutexLock lock(&mu_);
  if (stopped_) {
    return Refusal{grpc::StatusCode::UNAVAILABLE, "the console is shutting down", "stopping"};
  }
  int& n = calls_per_client_[client];
  if (n >= options_.max_calls_per_client) {
    return Refusal{grpc::StatusCode::RESOURCE_EXHAUSTED,
                   absl::StrCat("more than ", options_.max_calls_per_client,
                                " calls open from this address; close some streams"),
                   "too_many_calls"};
  }
  ++n;
  calls_open_.Increment();
  return std::nullopt;
}

void ConsoleServer::Impl::ReleaseCall(const std::string& client) {
  absl::MutexLock lock(&mu_);
  if (auto it = calls_per_client_.find(client);
      it != calls_per_client_.end() && --it->second <= 0) {
    calls_per_client_.erase(it);
  }
  calls_open_.Decrement();
}

awaitable<void> ConsoleServer::Impl::Accept() {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await acceptor_.async_accept(net::make_strand(ioc_),
                                                         net::redirect_error(use_awaitable, ec));
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;  // EMFILE and the like: the client retries
    bool admitted = false;
    {
      absl::MutexLock lock(&mu_);
      if (connections_ < options_.max_connections) {
        ++connections_;
        admitted = true;
      }
    }
    if (!admitted) {
      refused_.Add({{"reason", "too_many_connections"}}).Increment();
      continue;  // the socket closes here
    }
    auto executor = socket.get_executor();
    net::co_spawn(executor, Serve(std::move(socket)), net::detached);
  }
}

awaitable<void> ConsoleServer::Impl::Serve(tcp::socket socket) {
  connections_open_.Increment();
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  const std::string client = ec ? "unknown" : remote.address().to_string();
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  try {
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      // No body limit while the header is read (Beast would refuse a long Content-Length
      // before we could answer it with a gRPC status); each route sets its own after.
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      stream.expires_after(absl::ToChronoMilliseconds(options_.idle_timeout));
      co_await http::async_read_header(stream, buffer, parser, use_awaitable);
      const auto& req = parser.get();
      bool keep_alive = req.keep_alive();
      const auto ct = req[http::field::content_type];
      if (req.method() == http::verb::post &&
          FormatOf(std::string_view(ct.data(), ct.size())).has_value()) {
        keep_alive = co_await ServeCall(stream, buffer, parser, client) && keep_alive;
      } else if (req.method() == http::verb::options) {
        parser.body_limit(0);
        co_await http::async_read(stream, buffer, parser, use_awaitable);
        bool cross_origin = false;
        const bool allowed = OriginAllowed(req, cross_origin) && cross_origin;
        http::response<http::empty_body> res{
            allowed ? http::status::no_content : http::status::forbidden, req.version()};
        SetCommonHeaders(res, req);
        if (allowed) {
          res.set(http::field::access_control_allow_methods, "POST");
          res.set(http::field::access_control_allow_headers, kAllowedRequestHeaders);
          res.set(http::field::access_control_max_age, "600");
        }
        res.keep_alive(keep_alive);
        res.prepare_payload();
        requests_.Add({{"route", "other"}, {"code", std::to_string(res.result_int())}}).Increment();
        co_await http::async_write(stream, res, use_awaitable);
      } else if (req.method() == http::verb::get || req.method() == http::verb::head) {
        parser.body_limit(0);
        co_await http::async_read(stream, buffer, parser, use_awaitable);
        keep_alive = co_await ServeFile(stream, req) && keep_alive;
      } else {
        http::response<http::string_body> res{http::status::method_not_allowed, req.version()};
        SetCommonHeaders(res, req);
        res.set(http::field::allow, "GET, HEAD, POST, OPTIONS");
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        res.body() = "gRPC-Web calls are POST with Content-Type application/grpc-web+proto\n";
        res.keep_alive(false);
        res.prepare_payload();
        requests_.Add({{"route", "other"}, {"code", "405"}}).Increment();
        co_await http::async_write(stream, res, use_awaitable);
        keep_alive = false;
      }
      if (!keep_alive) break;
    }
  } catch (const boost::system::system_error& e) {
    // The client went away, timed out or sent something that is not HTTP: nothing to answer.
    log_->debug("console: connection from {} ended: {}", client, e.code().message());
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  connections_open_.Decrement();
  absl::MutexLock lock(&mu_);
  --connections_;
}

bool ConsoleServer::Impl::OriginAllowed(const http::request<http::string_body>& req,
                                        bool& cross_origin) const {
  cross_origin = false;
  const auto origin_field = req[http::field::origin];
  if (origin_field.empty()) return true;  // not sent by a browser's cross-origin request
  const std::string_view origin(origin_field.data(), origin_field.size());
  const auto host_field = req[http::field::host];
  if (absl::EqualsIgnoreCase(std::string(OriginHost(origin)),
                             std::string(host_field.data(), host_field.size()))) {
    return true;
  }
  cross_origin = true;
  for (const auto& allowed : options_.allowed_origins) {
    if (absl::EqualsIgnoreCase(allowed, std::string(origin))) return true;
  }
  return false;
}

template <class Response>
void ConsoleServer::Impl::SetCommonHeaders(Response& res,
                                           const http::request<http::string_body>& req) const {
  res.set(http::field::server, "wa-sentinel-console");
  res.set("Content-Security-Policy", kContentSecurityPolicy);
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Frame-Options", "DENY");
  bool cross_origin = false;
  if (OriginAllowed(req, cross_origin) && cross_origin) {
    const auto origin = req[http::field::origin];
    res.set(http::field::access_control_allow_origin, origin);
    res.set(http::field::vary, "Origin");
    res.set("Access-Control-Expose-Headers", "grpc-status, grpc-message");
  }
}

awaitable<void> ConsoleServer::Impl::WriteRefusal(beast::tcp_stream& stream,
                                                  const http::request<http::string_body>& req,
                                                  WireFormat format, const Refusal& refusal) {
  refused_.Add({{"reason", refusal.reason}}).Increment();
  calls_total_.Add({{"upstream", "console"}, {"code", CodeName(refusal.code)}}).Increment();
  const grpc::Status status(refusal.code, refusal.message);
  const Metadata none;
  co_await WriteTrailersOnly(stream, req, format, status, none, /*keep_alive=*/false);
}

awaitable<void> ConsoleServer::Impl::WriteTrailersOnly(beast::tcp_stream& stream,
                                                       const http::request<http::string_body>& req,
                                                       WireFormat format,
                                                       const grpc::Status& status,
                                                       const Metadata& metadata, bool keep_alive) {
  http::response<http::empty_body> res{http::status::ok, req.version()};
  SetCommonHeaders(res, req);
  res.set(http::field::content_type, std::string(ContentTypeOf(format)));
  res.set(http::field::cache_control, "no-store");
  res.set("grpc-status", std::to_string(static_cast<int>(status.error_code())));
  res.set("grpc-message", PercentEncode(status.error_message()));
  for (const auto& [key, value] : metadata) res.insert(key, value);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  requests_.Add({{"route", "grpc_web"}, {"code", "200"}}).Increment();
  stream.expires_after(kWriteTimeout);
  co_await http::async_write(stream, res, use_awaitable);
}

std::optional<ConsoleServer::Impl::Refusal> ConsoleServer::Impl::Prepare(
    const http::request<http::string_body>& req, WireFormat format, const std::string& method,
    const Upstream*& upstream, ForwardedRequest& forwarded) const {
  upstream = bridge_.Route(method);
  if (upstream == nullptr) {
    return Refusal{
        grpc::StatusCode::UNIMPLEMENTED,
        absl::StrCat("no service behind this console answers ", QuoteForLog(method, 120)),
        "unknown_method"};
  }
  auto message = DecodeRequest(req.body(), format, options_.max_message_bytes);
  if (!message.ok()) {
    const bool too_large = message.status().code() == absl::StatusCode::kResourceExhausted;
    return Refusal{
        too_large ? grpc::StatusCode::RESOURCE_EXHAUSTED : grpc::StatusCode::INVALID_ARGUMENT,
        std::string(message.status().message()), too_large ? "too_large" : "malformed"};
  }
  forwarded.method = method;
  forwarded.message = std::move(*message);
  for (const auto name : kForwardedHeaders) {
    const auto value = req[beast::string_view(name.data(), name.size())];
    if (!value.empty()) forwarded.metadata.emplace_back(name, std::string(value));
  }
  if (const auto t = req["grpc-timeout"]; !t.empty()) {
    forwarded.timeout = ParseGrpcTimeout(std::string_view(t.data(), t.size()));
    if (!forwarded.timeout) {
      return Refusal{grpc::StatusCode::INVALID_ARGUMENT,
                     "grpc-timeout must be 1 to 8 digits and one of H M S m u n", "malformed"};
    }
  }
  return std::nullopt;
}

awaitable<bool> ConsoleServer::Impl::ServeCall(beast::tcp_stream& stream,
                                               beast::flat_buffer& buffer,
                                               http::request_parser<http::string_body>& parser,
                                               const std::string& client) {
  const auto& req = parser.get();
  const auto ct = req[http::field::content_type];
  const WireFormat format = *FormatOf(std::string_view(ct.data(), ct.size()));
  const std::string method(req.target());

  // Refusals are collected, not answered on the spot: one co_await with named arguments (GCC 12
  // mishandles temporaries inside co_await expressions).
  const std::string too_large =
      absl::StrCat("request message larger than ", options_.max_message_bytes, " bytes");
  std::optional<Refusal> refusal;
  bool cross_origin = false;
  // The body's size bound: the message, its frame header, and base64's 4/3 in the text format.
  const size_t frame_limit = options_.max_message_bytes + 5;
  const size_t body_limit =
      format == WireFormat::kText ? (frame_limit + 2) / 3 * 4 + 4 : frame_limit;
  if (!OriginAllowed(req, cross_origin)) {
    refusal = Refusal{grpc::StatusCode::PERMISSION_DENIED,
                      "this console answers pages of its own origin and of --allowed_origins only",
                      "origin"};
  } else if (const auto length = parser.content_length(); length && *length > body_limit) {
    // The body is not read here: the connection cannot be reused (WriteRefusal closes it).
    refusal = Refusal{grpc::StatusCode::RESOURCE_EXHAUSTED, too_large, "too_large"};
  }
  boost::system::error_code ec;
  bool body_read = false;
  if (!refusal) {
    body_read = true;
    parser.body_limit(body_limit);
    stream.expires_after(absl::ToChronoMilliseconds(options_.idle_timeout));
    co_await http::async_read(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
    if (ec == http::error::body_limit) {
      refusal = Refusal{grpc::StatusCode::RESOURCE_EXHAUSTED, too_large, "too_large"};
    } else if (ec) {
      throw boost::system::system_error(ec);
    }
  }
  const Upstream* upstream = nullptr;
  ForwardedRequest forwarded;
  if (!refusal) refusal = Prepare(req, format, method, upstream, forwarded);
  if (!refusal) refusal = AcquireCall(client);
  if (refusal) {
    if (refusal->reason == "too_large" && !body_read) {
      // Read the refused body to its end (up to kDrainLimit) before answering: a browser, or
      // any HTTP client, still writing it would otherwise see the connection reset and never
      // read the status.
      const auto length = parser.content_length().value_or(0);
      if (length <= kDrainLimit) {
        size_t remaining = length;
        const size_t buffered = std::min(buffer.size(), remaining);
        buffer.consume(buffered);
        remaining -= buffered;
        std::array<char, 16384> scratch;
        stream.expires_after(absl::ToChronoMilliseconds(options_.idle_timeout));
        while (remaining > 0) {
          const size_t n = co_await stream.async_read_some(
              net::buffer(scratch.data(), std::min(scratch.size(), remaining)), use_awaitable);
          remaining -= n;
        }
      }
    }
    co_await WriteRefusal(stream, req, format, *refusal);
    co_return false;
  }

  // The call is on. Its HTTP header goes out with the service's initial metadata, when that
  // arrives (for WatchSessionEvents: once the watch is in place, so a browser that reloads what
  // it shows on the header misses no event); a call that ends before it is answered
  // trailers-only. Then each message as a data frame, and the trailers frame.
  const absl::Time started = absl::Now();
  auto state = std::make_shared<CallState>(stream.get_executor(), *this);
  state->wake.expires_at(net::steady_timer::time_point::max());
  {
    absl::MutexLock lock(&mu_);
    ++forwarded_outstanding_;
  }
  const std::shared_ptr<CallHandle> handle = bridge_.Start(*upstream, std::move(forwarded), state);
  {
    absl::MutexLock lock(&mu_);
    calls_.insert(handle);
    if (stopped_) handle->Cancel();
  }

  // A browser that goes away mid-stream is seen by a read on its socket: readable with nothing
  // to read is its FIN. The call is cancelled then; browsers do not pipeline requests, so data
  // arriving here only makes the connection close after this answer.
  struct DisconnectWatch {
    bool active = true;  // false once the answer is over: the socket may be gone then
    bool client_gone = false;
    bool pipelined = false;
  };
  auto watch = std::make_shared<DisconnectWatch>();
  stream.socket().async_wait(tcp::socket::wait_read, [&socket = stream.socket(), watch,
                                                      handle](boost::system::error_code wait_ec) {
    if (wait_ec || !watch->active) return;
    boost::system::error_code avail_ec;
    if (socket.available(avail_ec) == 0 || avail_ec) {
      watch->client_gone = true;
      handle->Cancel();
    } else {
      watch->pipelined = true;
    }
  });

  const bool chunked = req.version() >= 11;
  http::response<http::empty_body> res{http::status::ok, req.version()};
  http::response_serializer<http::empty_body> serializer{res};
  bool header_written = false;
  size_t messages = 0;
  grpc::Status status;
  bool write_failed = false;
  auto fail_write = [&] {
    write_failed = true;
    handle->Cancel();
  };
  for (;;) {
    std::optional<Metadata> headers;
    std::optional<std::string> message_out;
    absl::AnyInvocable<void() &&> next;
    Metadata metadata;
    bool done = false;
    {
      absl::MutexLock lock(&state->mu);
      if (!header_written && state->headers) {
        headers = std::move(state->headers);
        state->headers.reset();
      } else if (state->message) {
        message_out = std::move(state->message);
        state->message.reset();
        next = std::move(state->next);
      } else if (state->done) {
        done = true;
        status = state->status;
        metadata = std::move(state->metadata);
      }
    }
    if (headers) {
      SetCommonHeaders(res, req);
      res.set(http::field::content_type, std::string(ContentTypeOf(format)));
      res.set(http::field::cache_control, "no-store");
      res.set("X-Accel-Buffering", "no");  // a proxy in front must not hold events back
      for (const auto& [key, value] : *headers) res.insert(key, value);
      res.keep_alive(chunked && req.keep_alive());
      if (chunked) res.chunked(true);
      stream.expires_after(kWriteTimeout);
      co_await http::async_write_header(stream, serializer, net::redirect_error(use_awaitable, ec));
      header_written = true;
      if (ec) fail_write();
      continue;
    }
    if (message_out) {
      ++messages;
      if (!write_failed) {
        const std::string frame = EncodeMessage(*message_out, format);
        stream.expires_after(kWriteTimeout);
        if (chunked) {
          co_await net::async_write(stream, http::make_chunk(net::buffer(frame)),
                                    net::redirect_error(use_awaitable, ec));
        } else {
          co_await net::async_write(stream, net::buffer(frame),
                                    net::redirect_error(use_awaitable, ec));
        }
        if (ec) fail_write();
      }
      std::move(next)();
      continue;
    }
    if (done) {
      if (!header_written) {
        try {
          co_await WriteTrailersOnly(stream, req, format, status, metadata,
                                     req.keep_alive() && !watch->client_gone);
        } catch (const boost::system::system_error&) {
          write_failed = true;  // the client is gone; the call's books are closed below
        }
      } else if (!write_failed) {
        const std::string frame = EncodeTrailers(static_cast<int>(status.error_code()),
                                                 status.error_message(), metadata, format);
        stream.expires_after(kWriteTimeout);
        if (chunked) {
          co_await net::async_write(stream, http::make_chunk(net::buffer(frame)),
                                    net::redirect_error(use_awaitable, ec));
          if (!ec) {
            co_await net::async_write(stream, http::make_chunk_last(),
                                      net::redirect_error(use_awaitable, ec));
          }
        } else {
          co_await net::async_write(stream, net::buffer(frame),
                                    net::redirect_error(use_awaitable, ec));
        }
        write_failed = static_cast<bool>(ec);
      }
      break;
    }
    stream.expires_never();
    state->wake.expires_at(net::steady_timer::time_point::max());
    co_await state->wake.async_wait(net::redirect_error(use_awaitable, ec));
  }
  watch->active = false;
  boost::system::error_code ignored;
  stream.socket().cancel(ignored);  // the disconnect watch, if it is still waiting
  {
    absl::MutexLock lock(&mu_);
    calls_.erase(handle);
  }
  ReleaseCall(client);
  calls_total_.Add({{"upstream", upstream->name}, {"code", CodeName(status.error_code())}})
      .Increment();
  if (messages <= 1) unary_seconds_.Observe(absl::ToDoubleSeconds(absl::Now() - started));
  requests_.Add({{"route", "grpc_web"}, {"code", "200"}}).Increment();
  log_->debug("console: {} from {} → {} ({} messages, {} ms){}", method, client,
              CodeName(status.error_code()), messages,
              absl::ToInt64Milliseconds(absl::Now() - started),
              watch->client_gone ? ", client went away" : "");
  co_return (chunked || !header_written) && !write_failed && !watch->client_gone &&
      !watch->pipelined;
}

awaitable<bool> ConsoleServer::Impl::ServeFile(beast::tcp_stream& stream,
                                               const http::request<http::string_body>& req) {
  const std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find_first_of("?#"));
  // Arguments by view only: GCC 12 mishandles non-trivial temporaries in co_await expressions.
  auto plain = [&](http::status status, std::string_view body,
                   std::string_view route) -> awaitable<bool> {
    http::response<http::string_body> res{status, req.version()};
    SetCommonHeaders(res, req);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    if (req.method() != http::verb::head) res.body() = std::string(body);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    requests_.Add({{"route", std::string(route)}, {"code", std::to_string(res.result_int())}})
        .Increment();
    co_await http::async_write(stream, res, use_awaitable);
    co_return req.keep_alive();
  };
  if (path == "/healthz") co_return co_await plain(http::status::ok, "ok\n", "probe");
  const std::filesystem::path root(options_.web_root);
  if (path == "/readyz") {
    std::error_code fec;
    const bool ready =
        !options_.web_root.empty() && std::filesystem::is_regular_file(root / "index.html", fec);
    co_return co_await plain(ready ? http::status::ok : http::status::service_unavailable,
                             ready ? "ready\n" : "the web app is not built (index.html missing)\n",
                             "probe");
  }
  if (options_.web_root.empty()) co_return co_await plain(http::status::not_found, "", "file");
  if (path.empty() || path.front() != '/' || path.find("..") != std::string_view::npos ||
      path.find_first_of(std::string_view("\\%\0", 3)) != std::string_view::npos) {
    co_return co_await plain(http::status::bad_request, "bad path\n", "file");
  }
  std::string relative(path.substr(1));
  if (relative.empty()) relative = "index.html";
  std::error_code fec;
  const bool exists = std::filesystem::is_regular_file(root / relative, fec);
  const std::string_view last = std::string_view(relative).substr(relative.rfind('/') + 1);
  if (!exists) {
    if (last.find('.') != std::string_view::npos) {
      co_return co_await plain(http::status::not_found, "not found\n", "file");
    }
    relative = "index.html";  // a route of the app: /sessions/<id>, /alerts
  }
  const std::string file = (root / relative).string();
  http::file_body::value_type body;
  beast::error_code bec;
  body.open(file.c_str(), beast::file_mode::scan, bec);
  if (bec) co_return co_await plain(http::status::not_found, "not found\n", "file");
  const auto size = body.size();
  http::response<http::file_body> res{std::piecewise_construct, std::make_tuple(std::move(body)),
                                      std::make_tuple(http::status::ok, req.version())};
  SetCommonHeaders(res, req);
  res.set(http::field::content_type, std::string(MimeType(relative)));
  // Files under assets/ carry their content's hash in their name and never change.
  res.set(http::field::cache_control, absl::StartsWith(relative, "assets/")
                                          ? "public, max-age=31536000, immutable"
                                          : "no-cache");
  if (absl::StartsWith(relative, "embed/")) {
    // The status components' script, loaded by other origins' pages (README "Console").
    res.set("Cross-Origin-Resource-Policy", "cross-origin");
  }
  res.keep_alive(req.keep_alive());
  res.content_length(size);
  requests_.Add({{"route", "file"}, {"code", "200"}}).Increment();
  if (req.method() == http::verb::head) {
    http::response<http::empty_body> head;
    head.base() = res.base();
    co_await http::async_write(stream, head, use_awaitable);
  } else {
    stream.expires_after(kWriteTimeout);
    co_await http::async_write(stream, res, use_awaitable);
  }
  co_return req.keep_alive();
}

ConsoleServer::ConsoleServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ConsoleServer::~ConsoleServer() { Stop(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<ConsoleServer>> ConsoleServer::Start(
    const ServerOptions& options, GrpcBridge& bridge, prometheus::Registry& registry,
    std::shared_ptr<spdlog::logger> log) {
  auto impl = std::make_unique<Impl>(options, bridge, registry, std::move(log));
  if (auto st = impl->Listen(); !st.ok()) return st;
  impl->Run();
  return std::unique_ptr<ConsoleServer>(new ConsoleServer(std::move(impl)));
}

void ConsoleServer::Stop(absl::Duration drain) { impl_->Stop(drain); }

int ConsoleServer::port() const { return impl_->port(); }

}  // namespace wasentinel::console
