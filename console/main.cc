// console: serves the status console's web app and bridges its gRPC-Web calls to the services
// (src/console_app.h; README "Console").
//
// Every flag has a WAS_ environment fallback (flag > environment > default).
#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "console_app.h"
#include "wasentinel/common/config.h"
#include "wasentinel/common/daemon.h"
#include "wasentinel/common/process.h"

ABSL_FLAG(std::string, http_listen, "0.0.0.0:8080",
          "the console's HTTP address: web app, gRPC-Web and probes [WAS_HTTP_LISTEN]");
ABSL_FLAG(std::string, metrics_listen, "0.0.0.0:9104",
          "Prometheus /metrics address; empty disables [WAS_METRICS_LISTEN]");
ABSL_FLAG(std::string, web_root, "",
          "the built web app (index.html, assets/); default the web directory beside the"
          " binary, else share/wa-sentinel/console of its prefix [WAS_WEB_ROOT]");
ABSL_FLAG(std::string, session_service, "127.0.0.1:7001",
          "session-service's gRPC address; empty: not bridged [WAS_SESSION_SERVICE]");
ABSL_FLAG(std::string, monitor_service, "127.0.0.1:7002",
          "health-monitor's gRPC address; empty: not bridged [WAS_MONITOR_SERVICE]");
ABSL_FLAG(std::string, alert_service, "127.0.0.1:7003",
          "alert-service's gRPC address; empty: not bridged [WAS_ALERT_SERVICE]");
ABSL_FLAG(std::string, upstream_ca, "",
          "PEM roots of the services' gRPC TLS; empty: plaintext [WAS_UPSTREAM_CA]");
ABSL_FLAG(std::string, upstream_cert, "",
          "client certificate (PEM) the console presents to the services (mTLS)"
          " [WAS_UPSTREAM_CERT]");
ABSL_FLAG(std::string, upstream_key, "", "its private key (PEM) [WAS_UPSTREAM_KEY]");
ABSL_FLAG(int, max_message_bytes, 1 << 20,
          "largest request message a browser may send, in bytes [WAS_MAX_MESSAGE_BYTES]");
ABSL_FLAG(int, max_calls_per_client, 32,
          "gRPC-Web calls open at once from one address [WAS_MAX_CALLS_PER_CLIENT]");
ABSL_FLAG(int, max_connections, 4096, "HTTP connections open at once [WAS_MAX_CONNECTIONS]");
ABSL_FLAG(std::string, allowed_origins, "",
          "other origins whose pages may call the console (CORS), comma-separated, e.g."
          " https://shop.example; empty: this origin only [WAS_ALLOWED_ORIGINS]");
ABSL_FLAG(int, http_threads, 2, "threads serving HTTP [WAS_HTTP_THREADS]");
ABSL_FLAG(absl::Duration, idle_timeout, absl::Seconds(60),
          "how long a connection may wait for its next request [WAS_IDLE_TIMEOUT]");
ABSL_FLAG(std::string, log_level, "info", "trace … off [WAS_LOG_LEVEL]");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(10),
          "drain deadline on SIGTERM [WAS_SHUTDOWN_TIMEOUT]");

namespace wasentinel::console {
namespace {

std::string DefaultWebRoot() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  for (const auto& candidate : {exe.parent_path() / "web",
                                exe.parent_path() / ".." / "share" / "wa-sentinel" / "console"}) {
    if (std::filesystem::is_regular_file(candidate / "index.html", ec)) {
      return std::filesystem::weakly_canonical(candidate, ec).string();
    }
  }
  return "";
}

ConsoleOptions ReadFlags() {
  ConsoleOptions o;
  o.http.listen = config::Address(FLAGS_http_listen);
  o.metrics_listen = config::Address(FLAGS_metrics_listen, /*empty_allowed=*/true);
  o.http.web_root = absl::GetFlag(FLAGS_web_root);
  if (o.http.web_root.empty()) o.http.web_root = DefaultWebRoot();
  o.session_service = config::Address(FLAGS_session_service, /*empty_allowed=*/true);
  o.monitor_service = config::Address(FLAGS_monitor_service, /*empty_allowed=*/true);
  o.alert_service = config::Address(FLAGS_alert_service, /*empty_allowed=*/true);
  o.upstream_ca_file = absl::GetFlag(FLAGS_upstream_ca);
  o.upstream_cert_file = absl::GetFlag(FLAGS_upstream_cert);
  o.upstream_key_file = absl::GetFlag(FLAGS_upstream_key);
  o.http.max_message_bytes =
      static_cast<size_t>(config::IntIn(FLAGS_max_message_bytes, 1024, 64 << 20));
  o.http.max_calls_per_client = config::IntIn(FLAGS_max_calls_per_client, 1, 100000);
  o.http.max_connections = config::IntIn(FLAGS_max_connections, 1, 1000000);
  for (auto origin :
       absl::StrSplit(absl::GetFlag(FLAGS_allowed_origins), ',', absl::SkipWhitespace())) {
    const std::string value(absl::StripAsciiWhitespace(origin));
    if (!absl::StartsWith(value, "https://") && !absl::StartsWith(value, "http://")) {
      config::Refuse(config::Handle(FLAGS_allowed_origins),
                     "wants origins such as https://shop.example, comma-separated");
    }
    o.http.allowed_origins.push_back(value);
  }
  o.http.threads = config::IntIn(FLAGS_http_threads, 1, 64);
  o.http.idle_timeout = config::DurationIn(FLAGS_idle_timeout, absl::Seconds(1), absl::Hours(1));
  o.log_level = config::LogLevel(FLAGS_log_level);
  return o;
}

}  // namespace
}  // namespace wasentinel::console

int main(int argc, char** argv) {
  wasentinel::daemon_internal::Begin(
      argc, argv, "console: the status console's web app and its gRPC-Web bridge to the services");
  const auto options = wasentinel::console::ReadFlags();
  const absl::Duration drain =
      wasentinel::config::DurationIn(FLAGS_shutdown_timeout, absl::ZeroDuration(), absl::Hours(1));
  auto app = wasentinel::console::ConsoleApp::Create(options);
  if (!app.ok()) return wasentinel::daemon_internal::Fail("", app.status());
  wasentinel::WaitForStopSignal();
  (*app)->Shutdown(drain);
  return 0;
}
