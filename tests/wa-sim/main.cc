// wa-sim: a WhatsApp Web server on loopback for tests, demos and load (see sim_server.h).
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "sim_server.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/process.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "address to listen on (loopback)");
ABSL_FLAG(uint16_t, port, 7080, "WebSocket port (0: any free port)");
ABSL_FLAG(uint16_t, control_port, 7081, "control API port (0: any free port)");
ABSL_FLAG(std::string, root_private_key, "",
          "hex of the certificate root's private key (default: a fresh key each start)");
ABSL_FLAG(std::string, ready_file, "",
          "write {ws_port, control_port, root_public_key} as JSON here once listening");
ABSL_FLAG(std::string, root_key_file, "",
          "write the certificate root's public key (hex) here, for clients to trust");
ABSL_FLAG(bool, phone_receipts, false,
          "the simulated phones send delivery receipts for what they decrypt");
ABSL_FLAG(int, prekey_count, -1,
          "pre-key count answered to every client instead of its real count (-1: the real one)");
ABSL_FLAG(int, pairing_refs, 6, "refs (QR codes) sent to a registering client");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: also serve wss:// on --tls_port");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(uint16_t, tls_port, 7443, "wss:// port with --tls_cert (0: any free port)");
ABSL_FLAG(uint32_t, min_version, 0,
          "refuse logins announcing a WhatsApp Web version older than 2.3000.N with 405 (0: none)");
ABSL_FLAG(uint32_t, web_version, 0,
          "the version GET / (the WhatsApp Web page) names (0: --min_version, else the default)");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error, off");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("wa-sim: a protocol-faithful WhatsApp Web server for tests");
  absl::ParseCommandLine(argc, argv);
  using namespace wasentinel;
  auto log = MakeLogger("wa-sim", absl::GetFlag(FLAGS_log_level));

  sim::SimOptions options;
  options.host = absl::GetFlag(FLAGS_host);
  options.ws_port = absl::GetFlag(FLAGS_port);
  options.control_port = absl::GetFlag(FLAGS_control_port);
  options.prekey_count = absl::GetFlag(FLAGS_prekey_count);
  options.phone_receipts = absl::GetFlag(FLAGS_phone_receipts);
  options.pairing_refs = std::clamp(absl::GetFlag(FLAGS_pairing_refs), 1, 20);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_port = absl::GetFlag(FLAGS_tls_port);
  options.min_version = absl::GetFlag(FLAGS_min_version);
  options.web_version = absl::GetFlag(FLAGS_web_version);
  if (auto hex = absl::GetFlag(FLAGS_root_private_key); !hex.empty()) {
    auto key = HexDecode(hex);
    if (!key.ok() || key->size() != 32) {
      log->critical("--root_private_key must be 64 hex digits");
      return 2;
    }
    options.root_private_key = *key;
  }

  wasentinel::RaiseFileLimit();
  boost::asio::io_context io(1);
  auto server = sim::SimServer::Create(io, options, log);
  if (!server.ok()) {
    log->critical("{}", server.status());
    return 1;
  }
  const std::string root_hex = HexEncode((*server)->root_public_key());
  log->info("listening: ws://{}:{}/ws/chat, control http://{}:{}, root public key {}", options.host,
            (*server)->ws_port(), options.host, (*server)->control_port(), root_hex);
  if (auto path = absl::GetFlag(FLAGS_root_key_file); !path.empty()) {
    std::ofstream(path) << root_hex << "\n";
  }
  if (auto path = absl::GetFlag(FLAGS_ready_file); !path.empty()) {
    nlohmann::json ready = {{"ws_port", (*server)->ws_port()},
                            {"tls_port", (*server)->tls_port()},
                            {"control_port", (*server)->control_port()},
                            {"root_public_key", root_hex}};
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << ready.dump() << "\n";
    std::rename(tmp.c_str(), path.c_str());
  }
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    log->info("stopping");
    io.stop();
  });
  io.run();
  return 0;
}
