// session-service: keeps WhatsApp Web linked-device sessions connected (see src/app.h).
//
// Every flag has a WAS_ environment fallback (flag > environment > default).
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "app.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/config.h"
#include "wasentinel/common/daemon.h"

WAS_DEFINE_RUNTIME_FLAGS("0.0.0.0:7001", "0.0.0.0:9101");
ABSL_FLAG(std::string, auth_state_key, "",
          "sealing keys for stored credentials: KEY or ID:KEY[,ID:KEY] (first seals; 64 hex or "
          "base64 of 32 bytes) [WAS_AUTH_STATE_KEY]");
ABSL_FLAG(std::string, wa_url, "wss://web.whatsapp.com/ws/chat",
          "WhatsApp WebSocket URL [WAS_WA_URL]");
ABSL_FLAG(std::string, wa_root_key, "",
          "hex of the Noise certificate root public key; default WhatsApp's [WAS_WA_ROOT_KEY]");
ABSL_FLAG(std::string, keepalive_interval, "20s,30s",
          "ping interval range MIN,MAX [WAS_KEEPALIVE_INTERVAL]");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(10),
          "wait for a ping answer [WAS_KEEPALIVE_TIMEOUT]");
ABSL_FLAG(absl::Duration, keepalive_max_silence, absl::Minutes(3),
          "give a connection up after no ping answered this long [WAS_KEEPALIVE_MAX_SILENCE]");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(20),
          "connect + handshake + login [WAS_CONNECT_TIMEOUT]");
ABSL_FLAG(std::string, reconnect_backoff, "5s,15s,45s",
          "delays before the retries after a drop [WAS_RECONNECT_BACKOFF]");
ABSL_FLAG(double, restore_per_second, 20,
          "start-up restores per second, 0 = no limit [WAS_RESTORE_PER_SECOND]");
ABSL_FLAG(int, restore_concurrency, 200,
          "start-up restores connecting at once at most, 0 = no bound [WAS_RESTORE_CONCURRENCY]");
ABSL_FLAG(absl::Duration, event_retention, absl::Hours(720),
          "session events older than this are pruned [WAS_EVENT_RETENTION]");
ABSL_FLAG(absl::Duration, message_retention, absl::Hours(168),
          "messages sent and received are kept this long, then pruned [WAS_MESSAGE_RETENTION]");
ABSL_FLAG(double, send_rate, 5,
          "messages one session sends per second at most; more wait in its outbox, in order"
          " [WAS_SEND_RATE]");
ABSL_FLAG(std::string, advertise_address, "",
          "host:port other replicas reach this one's gRPC at, for forwarded calls; default"
          " hostname and the --grpc_listen port [WAS_ADVERTISE_ADDRESS]");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Seconds(30),
          "session lease time-to-live: a dead replica's sessions move after it; renewed every"
          " third of it [WAS_LEASE_TTL]");
ABSL_FLAG(bool, reseal_on_start, false,
          "re-seal all credentials under the first key of --auth_state_key at start-up"
          " [WAS_RESEAL_ON_START]");
ABSL_FLAG(std::string, qr_timeouts, "60s,20s",
          "how long the first and each later pairing QR code is shown [WAS_QR_TIMEOUTS]");
ABSL_FLAG(std::string, presence, "unavailable",
          "presence sent after login: unavailable (the phone keeps showing notifications) or"
          " available (marks the account online; the phone goes quiet) [WAS_PRESENCE]");
ABSL_FLAG(int, watch_buffer, 1000,
          "events a WatchSessionEvents stream may fall behind before it ends RESOURCE_EXHAUSTED"
          " (the watcher resumes with after_sequence) [WAS_WATCH_BUFFER]");
ABSL_FLAG(int, max_watches_per_key, 100,
          "WatchSessionEvents streams one API key may hold open [WAS_MAX_WATCHES_PER_KEY]");
ABSL_FLAG(std::string, wa_version, "auto",
          "WhatsApp Web version announced at login: auto (read from --wa_version_url at start-up,"
          " every 24 h and after a 405) or a fixed 2.3000.N [WAS_WA_VERSION]");
ABSL_FLAG(std::string, wa_version_url, "https://web.whatsapp.com/",
          "the page --wa_version=auto reads the version from [WAS_WA_VERSION_URL]");

namespace wasentinel::session {
namespace {

// The service's own flags, checked (exit 2 naming a bad one: config.h).
Options ReadFlags(RuntimeOptions runtime) {
  Options o;
  o.runtime = std::move(runtime);
  o.auth_state_keys = config::Required(FLAGS_auth_state_key, "sealing keys KEY or ID:KEY[,ID:KEY]");
  o.reseal_on_start = absl::GetFlag(FLAGS_reseal_on_start);
  o.advertise_address = config::Address(FLAGS_advertise_address, /*empty_allowed=*/true);
  o.manager.lease_ttl = config::DurationIn(FLAGS_lease_ttl, absl::Seconds(1), absl::Hours(1));
  auto& c = o.manager.connection;
  c.url = absl::GetFlag(FLAGS_wa_url);
  if (!absl::StartsWith(c.url, "wss://") && !absl::StartsWith(c.url, "ws://")) {
    config::Refuse(config::Handle(FLAGS_wa_url), "wants a wss:// (or ws://) URL");
  }
  if (auto hex = absl::GetFlag(FLAGS_wa_root_key); !hex.empty()) {
    auto key = HexDecode(hex);
    if (!key.ok() || key->size() != 32) {
      config::Refuse(config::Handle(FLAGS_wa_root_key), "wants 64 hex digits");
    }
    std::copy(key->begin(), key->end(), c.root_key.begin());
  }
  // A keepalive more often than every second floods the server (whatsmeow pings every
  // 20-30 s); no session should go more than 10 minutes without one.
  std::tie(c.keepalive_interval_min, c.keepalive_interval_max) =
      config::DurationRange(FLAGS_keepalive_interval, absl::Seconds(1), absl::Minutes(10));
  c.keepalive_response_timeout =
      config::DurationIn(FLAGS_keepalive_timeout, absl::Milliseconds(100), absl::Minutes(5));
  c.keepalive_max_silence =
      config::DurationIn(FLAGS_keepalive_max_silence, absl::Seconds(1), absl::Hours(1));
  if (c.keepalive_max_silence < c.keepalive_response_timeout) {
    config::RefuseConfig(absl::StrCat(config::Source(config::Handle(FLAGS_keepalive_max_silence)),
                                      " is shorter than ",
                                      config::Source(config::Handle(FLAGS_keepalive_timeout))));
  }
  const std::string presence = absl::GetFlag(FLAGS_presence);
  if (presence != "unavailable" && presence != "available") {
    config::Refuse(config::Handle(FLAGS_presence), "wants unavailable or available");
  }
  c.presence_available = presence == "available";
  o.wa_version.version = absl::GetFlag(FLAGS_wa_version);
  if (o.wa_version.version != "auto") {
    if (!wa::WaVersion::Parse(o.wa_version.version).ok()) {
      config::Refuse(config::Handle(FLAGS_wa_version),
                     "wants auto or a WhatsApp Web version 2.3000.N (N > 0)");
    }
  }
  o.wa_version.url = absl::GetFlag(FLAGS_wa_version_url);
  if (!absl::StartsWith(o.wa_version.url, "https://") &&
      !absl::StartsWith(o.wa_version.url, "http://")) {
    config::Refuse(config::Handle(FLAGS_wa_version_url), "wants an https:// (or http://) URL");
  }
  c.connect_timeout =
      config::DurationIn(FLAGS_connect_timeout, absl::Milliseconds(100), absl::Minutes(10));
  std::tie(c.qr_first_timeout, c.qr_next_timeout) = config::DurationRange(
      FLAGS_qr_timeouts, absl::Seconds(1), absl::Minutes(10), /*ordered=*/false);
  o.manager.backoff =
      config::DurationList(FLAGS_reconnect_backoff, absl::Milliseconds(100), absl::Hours(24));
  o.manager.restore_per_second = config::NonNegative(FLAGS_restore_per_second, 1e6);
  o.manager.restore_concurrency = config::IntIn(FLAGS_restore_concurrency, 0, 1000000);
  o.watch_limits.buffer = config::IntIn(FLAGS_watch_buffer, 16, 1000000);
  o.watch_limits.per_key = config::IntIn(FLAGS_max_watches_per_key, 1, 100000);
  o.event_retention =
      config::DurationIn(FLAGS_event_retention, absl::Hours(1), absl::Hours(24 * 3650));
  o.message_retention =
      config::DurationIn(FLAGS_message_retention, absl::Minutes(1), absl::Hours(24 * 3650));
  o.messenger.sends_per_second = config::NonNegative(FLAGS_send_rate, 1000);
  if (o.messenger.sends_per_second < 0.01) o.messenger.sends_per_second = 0.01;
  return o;
}

}  // namespace
}  // namespace wasentinel::session

int main(int argc, char** argv) {
  return wasentinel::DaemonMain<wasentinel::session::App>(
      argc, argv, "session-service: keeps WhatsApp Web sessions connected",
      wasentinel::session::ReadFlags);
}
