// The inside of wa-sim's SimServer (sim_server.h), shared by its sources and included by nothing
// else: the device registry, SimServer::State and one client connection (SimConn).
//
//   sim_server.cc       the listeners, the TLS front, a connection's WebSocket and Noise
//                       handshake, its writes and its end
//   sim_stanzas.cc      what a connection answers: login, pairing, iqs, stream errors, acks and
//                       the offline queue
//   sim_signal.cc       the Signal half: the key registry (pre-key uploads, counts, bundles),
//                       usync device lists, message and receipt routing, groups, the phones
//   sim_control_api.cc  the control API (HTTP/JSON) that tests drive the simulator with
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "binary_node.h"
#include "crypto.h"
#include "e2ee/journal_store.h"
#include "e2ee/signal.h"
#include "handshake.h"
#include "noise_channel.h"
#include "pairing.h"
#include "sim_server.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::sim {
namespace sim_internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
using json = nlohmann::json;

using wa::MakeNode;
using wa::Node;

using HttpRequest = http::request<http::string_body>;
using HttpResponse = http::response<http::string_body>;

// A device's Signal keys as its uploads left them at the server: what bundles are made of.
// One-time pre-keys are handed out once each, lowest id first (whatsmeow prekeys.go: the server
// answers a bundle without `<key>` once they are used up).
struct DeviceKeys {
  uint32_t registration_id = 0;
  Bytes identity_pub;
  signal::SignedPreKey signed_pre_key;  // the private half empty
  std::map<uint32_t, std::array<uint8_t, 32>> pre_keys;
};

// The primary device (device 0) of an account, played by wa-sim: its Signal identity is the
// account key that signs every linked device, as on a real phone; it publishes a bundle,
// decrypts what is sent to it and answers with delivery receipts.
struct Phone {
  DeviceKeys keys;  // what it published
  uint32_t next_pre_key = 1;
  std::unique_ptr<signal::MemoryStore> store;
  std::unique_ptr<signal::Protocol> protocol;
  int64_t received = 0;       // messages it decrypted
  int64_t undecryptable = 0;  // messages it could not decrypt
  std::deque<json> inbox;     // the last 100 it decrypted: {id, from, type, bytes}
};

// The phone side of an account: its identity (account) key signs every linked device.
struct Account {
  wa::KeyPair key = wa::KeyPair::Generate();
  std::string lid_user;
  uint32_t next_device = 1;
  uint32_t next_key_index = 1;
  std::shared_ptr<Phone> phone;  // made when first needed (sim_signal.cc)
};

// A group (POST /groups): its subject and members by phone; the creator is a super-admin.
struct Group {
  std::string subject;
  std::string creator;
  std::vector<std::string> participants;  // phones, the creator first
  int64_t creation = 0;
};

// A <failure> the next logins of a device meet (POST /devices/{jid}/fail-login).
struct LoginFailure {
  int reason = 0;
  int code = 0;        // 402: the ban code
  int64_t expire = 0;  // 402: seconds until the ban ends (0: not sent)
  std::string message;
  int remaining = 1;  // logins still to fail
};

// A stanza waiting for the device's next login: sent while it was offline, or sent to an
// earlier connection that never acknowledged it. The server keeps it until acked.
struct OfflineStanza {
  Node stanza;
  Node::Attrs expect;  // the ack's attributes (sorted)
  uint64_t sent = 0;   // the order it was sent to a connection in
};

struct Device {
  std::deque<OfflineStanza> offline;
  std::array<uint8_t, 32> noise_pub{};
  std::string lid;
  std::string name;
  bool logged_out = false;
  int64_t logins = 0;
  std::optional<LoginFailure> fail_login;
  uint32_t key_index = 0;          // the index its device identity was signed with
  std::optional<DeviceKeys> keys;  // from its first pre-key upload
  bool held = false;               // POST …/hold: routed stanzas wait in `offline`
  bool corrupt_next = false;       // POST …/corrupt-next: the next routed <enc> is damaged
};

class SimConn;

}  // namespace sim_internal

class SimServer::State : public std::enable_shared_from_this<SimServer::State> {
 public:
  State(boost::asio::io_context& io, SimOptions options, std::shared_ptr<spdlog::logger> log)
      : io_(io),
        options_(std::move(options)),
        log_(std::move(log)),
        ws_acceptor_(io),
        control_acceptor_(io),
        tls_acceptor_(io) {}

  boost::asio::io_context& io() { return io_; }

  // sim_server.cc: the keys, the certificate chain and the listeners.
  absl::Status Init();
  void Stop();

  uint16_t tls_port() const {
    return tls_acceptor_.is_open() ? tls_acceptor_.local_endpoint().port() : 0;
  }

  uint16_t ws_port() const { return ws_acceptor_.local_endpoint().port(); }
  uint16_t control_port() const { return control_acceptor_.local_endpoint().port(); }
  const wa::KeyPair& root() const { return root_; }
  const wa::KeyPair& static_key() const { return static_key_; }
  const Bytes& cert_chain() const { return cert_chain_; }
  const SimOptions& options() const { return options_; }
  spdlog::logger& log() { return *log_; }

  // Accounts (by phone), devices and live connections, touched only on the io thread.
  std::map<std::string, sim_internal::Account> accounts;
  std::map<std::string, sim_internal::Device> devices;
  std::map<uint64_t, std::shared_ptr<sim_internal::SimConn>> conns;
  uint64_t next_conn_id = 1;
  struct Counters {
    int64_t accepted = 0, logins = 0, login_failures = 0, replaced = 0, handshake_failures = 0,
            pings_answered = 0, acks_received = 0, messages_sent = 0, registrations = 0,
            pairings = 0, pairings_rejected = 0, logouts = 0, refused = 0,
            presences_available = 0,  // <presence type="available"> from any client
        outdated_refused = 0,         // logins refused 405 under min_version
        version_page_reads = 0,
            offline_delivered = 0,  // stanzas delivered from a device's offline queue
        offline_batches = 0,        // <ib><offline_batch> requests received
        prekey_uploads = 0,         // <iq xmlns="encrypt" type="set"> accepted
        bundles_served = 0,         // device bundles answered (with or without a one-time key)
        usync_queries = 0,          // device-list queries answered
        messages_routed = 0,        // <message> stanzas clients sent, accepted
        messages_refused = 0,       // <message> stanzas refused (malformed, unknown recipient)
        deliveries = 0,             // per-device copies made of routed messages
        receipts_routed = 0,        // receipts forwarded to the sender's devices
        retries_routed = 0,         // of which retry receipts
        phone_received = 0,         // messages the simulated phones decrypted
        phone_undecryptable = 0;    // and could not
  } counters;
  // Groups by JID user ("120363…"), and the Signal context the phones use.
  std::map<std::string, sim_internal::Group> groups;
  std::unique_ptr<signal::Context> signal_context;
  // The WhatsApp Web version policy (SimOptions::min_version, web_version; POST /version),
  // and the page's body when a test replaced it.
  uint32_t min_version = 0;
  uint32_t web_version = 0;
  std::optional<std::string> page_override;
  // POST /outage: while true every live connection has been reset and new ones are refused.
  bool outage = false;

  std::shared_ptr<sim_internal::SimConn> FindLive(const std::string& device_key);

 private:
  // sim_server.cc
  static boost::asio::awaitable<void> AcceptClients(std::shared_ptr<State> self,
                                                    boost::asio::ip::tcp::acceptor& acceptor,
                                                    boost::asio::ssl::context* tls);
  static boost::asio::awaitable<void> AcceptControl(std::shared_ptr<State> self);
  // A connection accepted on either listener (TLS: `tls` is the context it is served with).
  static void Admit(const std::shared_ptr<State>& self, boost::asio::ip::tcp::socket socket,
                    boost::asio::ssl::context* tls);
  // sim_control_api.cc
  static boost::asio::awaitable<void> ServeControl(std::shared_ptr<State> self,
                                                   boost::asio::ip::tcp::socket socket);
  // POST /pair: plays the phone scanning a QR code; POST /pair-code: the person typing the
  // pairing code on the phone. Both answer once the companion answered pair-success.
  static boost::asio::awaitable<sim_internal::HttpResponse> Pair(
      std::shared_ptr<State> self, const sim_internal::HttpRequest& req);
  sim_internal::HttpResponse Route(const sim_internal::HttpRequest& req);

  boost::asio::io_context& io_;
  SimOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  boost::asio::ip::tcp::acceptor ws_acceptor_;
  boost::asio::ip::tcp::acceptor control_acceptor_;
  boost::asio::ip::tcp::acceptor tls_acceptor_;
  std::optional<boost::asio::ssl::context> tls_ctx_;
  wa::KeyPair root_;
  wa::KeyPair static_key_;
  Bytes cert_chain_;
};

namespace sim_internal {

// One client connection: WebSocket, Noise responder, then the stanza loop.
class SimConn : public std::enable_shared_from_this<SimConn> {
 public:
  using PlainWs = websocket::stream<beast::tcp_stream>;
  using TlsWs = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

  /// `tls`: serve wss:// on `socket` with this context (TLS terminated here, in the same
  /// process and on the same socket, so a TLS session costs the sim one descriptor); null:
  /// ws://.
  SimConn(std::shared_ptr<SimServer::State> server, tcp::socket socket, uint64_t id,
          boost::asio::ssl::context* tls = nullptr);

  // sim_server.cc: the WebSocket, the Noise handshake, then the stanza loop.
  static awaitable<void> Run(std::shared_ptr<SimConn> self);

  // sim_stanzas.cc: what the client sends; login and registration.
  void Handle(const Node& node);
  void OnIq(const Node& iq);
  // sim_signal.cc: pre-keys, usync, bundles and group metadata (true: answered), and the
  // messages and receipts the client sends, routed to the devices they are for.
  bool OnSignalIq(const Node& iq);
  void OnMessage(const Node& message);
  void OnReceipt(const Node& receipt);
  // A stanza routed here: sent now, or after the offline queue being delivered.
  void Take(OfflineStanza s);
  void OnClientPayload(const wa::ServerHandshake::ClientIdentity& id);
  void StartRegistration(const wa::ServerHandshake::ClientIdentity& id);

  struct PairOutcome {
    int http_status = 200;
    json body;
  };
  using PairDone = std::function<void(PairOutcome)>;

  // sim_stanzas.cc: pairing, as the control API's POST /pair and /pair-code play the phone.
  bool Shows(const wa::ScannedQr& qr) const;
  bool AwaitsCode(const std::string& phone) const;
  absl::Status EnterCode(const std::string& code, const std::string& phone, const json& opts,
                         PairDone done);
  void SendPairSuccess(const wa::ScannedQr& qr, const std::string& phone, const json& opts,
                       PairDone done);

 private:
  void OnCompanionHello(const Node& reg, Node::Attrs attrs);
  void OnCompanionFinish(const Node& iq, Node::Attrs attrs);
  void OnPairAnswer(const Node& iq);

  std::string NextId() { return absl::StrCat("sim.", id_, ".", ++next_iq_); }

 public:
  // sim_server.cc: writes, and the end of the connection.
  void Send(const Node& node);
  void SendAndClose(const Node& node);
  static awaitable<void> WriteLoop(std::shared_ptr<SimConn> self);
  void Drop(bool rst);
  void Gone();

  // sim_stanzas.cc: stream errors, stanzas and their acks, the offline queue.
  void SendStreamError(int code, std::optional<std::string> conflict = std::nullopt);
  void OnAck(const Node& ack);
  static OfflineStanza MakeStanza(const std::string& tag, const std::string& from,
                                  const json& extra);
  std::string SendStanza(const std::string& tag, const std::string& from, const json& extra);
  void Expect(OfflineStanza s);
  void OfferOffline();
  void DeliverOffline();
  std::string SendMessage(const std::string& from);
  void Requeue();

  // sim_control_api.cc: the connection as GET /connections lists it.
  json ToJson() const;

  const std::string& jid() const { return jid_; }
  bool logged_in() const { return logged_in_ && !closed_; }
  void set_blackholed(bool on) { blackholed_ = on; }

 private:
  std::shared_ptr<SimServer::State> server_;
  std::string remote_;  // before ws_, which takes the socket
  std::variant<PlainWs, TlsWs> ws_;
  tcp::socket& Socket();  // the TCP socket under either
  boost::asio::awaitable<size_t> Read(beast::flat_buffer& buffer);
  boost::asio::awaitable<size_t> Write(boost::asio::const_buffer data);
  uint64_t id_;
  absl::Time connected_at_;
  std::string jid_;
  struct PendingPair {
    std::string iq_id, phone, device_key, lid, name;
    uint32_t key_index = 0;
    std::array<uint8_t, 32> account_pub{};
    PairDone done;
  };
  bool registering_ = false;
  std::array<uint8_t, 32> noise_pub_{};
  std::array<uint8_t, 32> identity_pub_{};
  std::vector<std::string> refs_;
  std::optional<PendingPair> pairing_;
  struct CodeRequest {  // a companion_hello and, once typed, the phone's primary_hello
    std::string phone, ref;
    Bytes wrapped_ephemeral;
    std::optional<wa::PhoneLinkCode> hello;
    json opts;
    PairDone done;
  };
  std::optional<CodeRequest> code_request_;
  uint64_t next_iq_ = 0;
  std::optional<wa::NoiseChannel> channel_;
  std::deque<Bytes> outbox_;
  std::string presence_;
  std::vector<std::string> presences_;  // every presence this connection sent, in order
  int64_t pings_ = 0;
  int64_t acks_ = 0;
  int64_t acks_matched_ = 0;         // acks of stanzas sent here, every attribute as expected
  int64_t acks_mismatched_ = 0;      // acks with an unknown id or other attributes
  int64_t receipts_settled_ = 0;     // routed messages a receipt answered (clients send no ack)
  std::deque<std::string> settled_;  // the last ids receipts settled (a later ack is no stray)
  std::map<std::string, OfflineStanza> awaiting_ack_;  // stanza id → it and its ack's attributes
  std::deque<OfflineStanza> offering_;  // the offline queue offered at login, until delivered
  std::unique_ptr<asio::steady_timer> offline_timer_;
  bool offline_batch_requested_ = false;
  uint64_t sent_ = 0;          // stanzas sent expecting an ack
  bool offline_done_ = false;  // <ib><offline> sent: the offline queue is delivered
  bool handshake_done_ = false;
  bool logged_in_ = false;
  bool blackholed_ = false;
  bool writing_ = false;
  bool close_after_write_ = false;
  bool closed_ = false;
};

// sim_signal.cc: the server's Signal half, for connections and the control API alike.

/// The account's simulated phone (device 0), made with its keys when first needed.
Phone& PhoneOf(SimServer::State& server, const std::string& user);
/// The devices usync lists for `user`: 0 (the phone) and every paired device not logged out;
/// empty when there is no such account.
std::vector<uint32_t> DevicesOf(SimServer::State& server, const std::string& user);
/// Hands `s` to device `user:device`: its phone when device 0; else its live connection, or its
/// offline queue while it has none or is held. A device that does not exist drops it.
void Deliver(SimServer::State& server, const std::string& user, uint32_t device, OfflineStanza s);
/// A stanza routed to a device and the ack it calls for (class, to = its from, participant,
/// recipient; type except for messages).
OfflineStanza Routed(Node stanza);
/// `<notification type="encrypt" from="@s.whatsapp.net"><count value/>`: the device's one-time
/// pre-keys at the server are running out (whatsmeow notification.go: under 5, upload more).
void NotifyPreKeyCount(SimServer::State& server, const std::string& device_key, size_t count);
/// The phone of `user` reinstalled: new identity and keys, and every device of other accounts
/// told with `<notification type="encrypt" from="USER@s.whatsapp.net"><identity/>`. Answers
/// how many devices were told.
absl::StatusOr<int> ResetIdentity(SimServer::State& server, const std::string& user);
/// The phone of `from` (made if new: an account with no linked device) writes `text` to `to`,
/// as WhatsApp's phone app does: a `conversation` encrypted to every device of `to` (starting
/// sessions from bundles where it has none) and, as a deviceSentMessage with `recipient`, to
/// its own linked devices. Answers {"id", "copies"}; NOT_FOUND when `to` has no account.
absl::StatusOr<json> PhoneSend(SimServer::State& server, const std::string& from,
                               const std::string& to, const std::string& text);

}  // namespace sim_internal
}  // namespace wasentinel::sim
