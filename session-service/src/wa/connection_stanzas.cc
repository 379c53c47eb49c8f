// What the server says and how a connection answers it: login success and failure (the failure
// table), stream errors, <ib>, iqs, pairing, and the acks of inbound stanzas. The transport and
// the connection's life are in connection.cc.
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "connection.h"
#include "connection_impl.h"
#include "wasentinel/common/logging.h"

namespace wasentinel::wa {
namespace {

namespace beast = boost::beast;
using connection_internal::ToChrono;

int CodeOf(const Node& node, std::string_view attr) {
  int code = 0;
  const std::string* v = node.Attr(attr);
  return v && absl::SimpleAtoi(*v, &code) ? code : 0;
}

}  // namespace

std::string_view TemporaryBanText(int code) {
  switch (code) {
    case 101:
      return "sent too many messages to people who do not have the number in their contacts";
    case 102:
      return "too many people blocked the number";
    case 103:
      return "created too many groups with people who do not have the number in their contacts";
    case 104:
      return "sent the same message to too many people";
    case 106:
      return "sent too many messages to a broadcast list";
    default:
      return "a breach of WhatsApp's terms of service (no reason given)";
  }
}

CloseInfo StreamErrorInfo(const Node& node) {
  CloseInfo info;
  info.code = CodeOf(node, "code");
  const Node* conflict = node.Child("conflict");
  const std::string conflict_type = conflict ? conflict->AttrOr("type") : "";
  if (info.code == 515) {
    info.cause = CloseCause::kRestartRequired;
  } else if (info.code == 401 && conflict_type == "device_removed") {
    info.cause = CloseCause::kLoggedOut;
  } else if (conflict_type == "replaced") {
    info.cause = CloseCause::kReplaced;
    if (!info.code) info.code = 440;
  } else {
    // 503 and anything else: the socket is gone and a reconnect follows (whatsmeow's
    // auto-reconnect does the same); a real logout shows at the next login as a <failure>.
    info.cause = CloseCause::kServerError;
    if (!info.code) info.code = 500;
  }
  info.detail = conflict_type.empty()
                    ? absl::StrCat("stream error ", info.code)
                    : absl::StrCat("stream error ", info.code, " (conflict ", conflict_type, ")");
  return info;
}

CloseInfo FailureInfo(const Node& node) {
  CloseInfo info;
  info.code = CodeOf(node, "reason");
  if (!info.code) info.code = 500;
  std::string what;
  switch (info.code) {
    case 401:
      info.cause = CloseCause::kLoggedOut;
      what = "logged out from another device";
      break;
    case 403:
      info.cause = CloseCause::kLoggedOut;
      what = "the primary device was logged out or the account is locked";
      break;
    case 406:
      info.cause = CloseCause::kLoggedOut;
      what = "logged out (the account may be banned)";
      break;
    case 402: {
      info.cause = CloseCause::kTemporaryBan;
      info.ban_code = CodeOf(node, "code");
      if (const int expire = CodeOf(node, "expire"); expire > 0) {
        info.ban_expires_in = absl::Seconds(expire);
      }
      what = absl::StrCat("temporarily banned (", info.ban_code, ": ",
                          Sv(TemporaryBanText(info.ban_code)), ")");
      break;
    }
    case 405:
      info.cause = CloseCause::kClientOutdated;
      what = "the WhatsApp Web version is outdated";
      break;
    case 500:
    case 503:
      info.cause = CloseCause::kServerError;
      what = info.code == 500 ? "internal server error" : "service unavailable";
      break;
    default:
      info.cause = CloseCause::kLoginRefused;
      what = info.code == 409   ? "the user agent was rejected"
             : info.code == 413 ? "the crypto auth token expired"
             : info.code == 414 ? "the crypto auth token is invalid"
                                : "refused";
  }
  info.detail = absl::StrCat("login failure ", info.code, ": ", what);
  // The server's own words, bounded: they end up in last_error and alert texts.
  if (const std::string* m = node.Attr("message"); m && !m->empty()) {
    absl::StrAppend(&info.detail, " (", QuoteForLog(*m, 200), ")");
  }
  return info;
}

void Connection::Impl::Handle(const Node& node) {
  if (log_->should_log(spdlog::level::trace)) log_->trace("recv {}", NodeToLogXml(node));
  const std::string& tag = node.tag;
  if (tag == "success") {
    OnSuccess(node);
  } else if (tag == "failure") {
    Finish(FailureInfo(node));
  } else if (tag == "stream:error") {
    Finish(StreamErrorInfo(node));
  } else if (tag == "xmlstreamend") {
    Finish({CloseCause::kSocketClosed, 0, "the server ended the stream"});
  } else if (tag == "iq") {
    OnIq(node);
  } else if (tag == "message" || tag == "receipt" || tag == "notification" || tag == "call" ||
             tag == "status" || tag == "appdata") {
    OnStanza(node);
  } else if (tag == "ib") {
    OnIb(node);
  } else if (tag == "ack" && node.AttrOr("class") == "message") {
    if (observer_) observer_->OnMessageStanza(node);  // the server took a message we sent
  }
}

// <ib>: the server's information about the connection (whatsmeow connectionevents.go
// handleIB, Baileys socket.ts).
void Connection::Impl::OnIb(const Node& node) {
  if (node.Child("downgrade_webclient")) {
    Finish({CloseCause::kLoginRefused, 411,
            "the phone does not support multi-device (downgrade_webclient)"});
    return;
  }
  if (const Node* preview = node.Child("offline_preview")) {
    // Stanzas queued while the device was offline: ask for them as Baileys does (100 at a
    // time); each is acked as it arrives, so the server can drop it.
    log_->debug("{} stanzas queued while offline; fetching them", preview->AttrOr("count"));
    Send(MakeNode("ib", {}, std::vector<Node>{MakeNode("offline_batch", {{"count", "100"}})}));
  }
  if (const Node* offline = node.Child("offline")) {
    log_->debug("offline queue delivered ({} stanzas)", offline->AttrOr("count", "0"));
  }
}

void Connection::Impl::OnSuccess(const Node& node) {
  if (logged_in_) return;
  logged_in_ = true;
  login_deadline_.cancel();
  LoginInfo info;
  int64_t t = 0;
  if (const std::string* ts = node.Attr("t"); ts && absl::SimpleAtoi(*ts, &t)) {
    info.server_time = absl::FromUnixSeconds(t);
  }
  info.lid = node.AttrOr("lid");
  last_pong_ = absl::Now();
  // whatsmeow: become active, learn the prekey count, then show presence.
  SendIq(MakeNode("iq", {{"to", std::string(kServerJid)}, {"xmlns", "passive"}, {"type", "set"}},
                  std::vector<Node>{MakeNode("active")}),
         [](absl::StatusOr<Node>) {});
  SendIq(MakeNode("iq", {{"to", std::string(kServerJid)}, {"xmlns", "encrypt"}, {"type", "get"}},
                  std::vector<Node>{MakeNode("count")}),
         [self = shared_from_this()](absl::StatusOr<Node> reply) {
           if (!reply.ok()) return;
           if (const Node* count = reply->Child("count")) {
             self->stats.prekey_count = CodeOf(*count, "value");
             if (self->observer_ && !self->finished_) {
               self->observer_->OnPreKeyCount(self->stats.prekey_count);
             }
           }
         });
  Send(Presence(options_.presence_available ? "available" : "unavailable"));
  ScheduleKeepalive();
  if (observer_) observer_->OnLoggedIn(info);
  if (pending_logout_) {
    auto [done, timeout] = *std::exchange(pending_logout_, std::nullopt);
    Logout(std::move(done), timeout);
  }
}

void Connection::Impl::OnIq(const Node& node) {
  const std::string type = node.AttrOr("type");
  if (type == "result" || type == "error") {
    auto it = pending_.find(node.AttrOr("id"));
    if (it == pending_.end()) return;
    auto done = std::move(it->second.done);
    it->second.timer->cancel();
    pending_.erase(it);
    if (type == "error") {
      const Node* err = node.Child("error");
      done(absl::FailedPreconditionError(absl::StrCat("iq error ", err ? err->AttrOr("code") : "",
                                                      " ", err ? err->AttrOr("text") : "")));
    } else {
      done(node);
    }
    return;
  }
  if (type == "set" && !creds_.paired()) {
    if (node.Child("pair-device")) return OnPairDevice(node);
    if (node.Child("pair-success")) return OnPairSuccess(node);
  }
  if (type == "get" && node.AttrOr("xmlns") == "urn:xmpp:ping") {
    Send(MakeNode(
        "iq",
        {{"id", node.AttrOr("id")}, {"to", node.AttrOr("from", kServerJid)}, {"type", "result"}}));
  }
}

// §8 step 1: the refs arrive; each is shown in turn, then the pairing has timed out.
void Connection::Impl::OnPairDevice(const Node& iq) {
  Send(MakeNode("iq",
                {{"to", std::string(kServerJid)}, {"type", "result"}, {"id", iq.AttrOr("id")}}));
  auto refs = PairDeviceRefs(iq);
  if (!refs.ok()) {
    Finish({CloseCause::kProtocolError, 0, std::string(refs.status().message())});
    return;
  }
  login_deadline_.cancel();  // the QR timers bound the wait from here
  qr_refs_ = *std::move(refs);
  next_qr_ = 0;
  if (!options_.pairing_phone.empty() && !link_code_) RequestLinkCode();
  ShowNextQr();
}

// §8 phone-number pairing code: ask the server for a code for the number; it is valid while
// the refs last.
void Connection::Impl::RequestLinkCode() {
  link_code_ = CompanionHello(options_.pairing_phone, creds_, options_.pairing_platform_display);
  const absl::Duration valid = options_.qr_first_timeout +
                               options_.qr_next_timeout * static_cast<int64_t>(qr_refs_.size() - 1);
  SendIq(link_code_->iq, [self = shared_from_this(), valid](absl::StatusOr<Node> reply) {
    if (self->finished_ || self->paired_) return;
    auto ref = reply.ok() ? LinkCodeRef(*reply) : reply.status();
    if (!ref.ok()) {
      self->Finish(
          {CloseCause::kPairingRejected, 400,
           absl::StrCat("the server refused a pairing code for ",
                        MaskPhone(self->options_.pairing_phone), ": ", ref.status().message())});
      return;
    }
    self->link_code_ref_ = *std::move(ref);
    self->log_->info("pairing: code issued for {}, valid for {}",
                     MaskPhone(self->options_.pairing_phone), absl::FormatDuration(valid));
    if (self->observer_)
      self->observer_->OnPairingCode(FormatLinkCode(self->link_code_->code), valid);
  });
}

// The phone's primary_hello: the person typed the code. Answer with the key bundle and key
// the coming pair-success with the adv secret both sides now derive.
void Connection::Impl::OnPrimaryHello(const Node& notification) {
  if (!link_code_ || link_code_ref_.empty() || paired_) return;
  auto finish =
      AnswerPrimaryHello(notification, *link_code_, link_code_ref_, options_.pairing_phone, creds_);
  if (!finish.ok()) {
    log_->warn("pairing: the phone's answer to the code was refused: {}",
               finish.status().message());
    Finish({CloseCause::kPairingRejected, 401,
            absl::StrCat("pairing code answer refused: ", finish.status().message())});
    return;
  }
  creds_.adv_secret = finish->adv_secret;
  log_->info("pairing: code entered on the phone; finishing");
  SendIq(std::move(finish->iq), [](absl::StatusOr<Node>) {});
}

void Connection::Impl::ShowNextQr() {
  if (finished_ || closing_ || paired_) return;
  if (next_qr_ >= qr_refs_.size()) {
    Finish({CloseCause::kPairingTimeout, 408,
            link_code_ ? "the pairing code was not entered in time"
                       : "no QR code was scanned in time"});
    return;
  }
  const absl::Duration valid = next_qr_ == 0 ? options_.qr_first_timeout : options_.qr_next_timeout;
  const std::string text = QrCodeText(qr_refs_[next_qr_++], creds_);
  // Pairing by code: the refs only bound how long the code is valid.
  const bool show = !link_code_;
  if (show) {
    log_->info("pairing: QR code {} of {} shown for {}", next_qr_, qr_refs_.size(),
               absl::FormatDuration(valid));
  }
  if (show && observer_) {
    observer_->OnQrCode(text, valid, static_cast<int>(next_qr_), static_cast<int>(qr_refs_.size()));
  }
  qr_timer_.expires_after(ToChrono(valid));
  qr_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) self->ShowNextQr();
  });
}

// §8 steps 4–8: verify the identity the phone signed, countersign it, keep the credentials.
void Connection::Impl::OnPairSuccess(const Node& iq) {
  qr_timer_.cancel();
  auto answer = AnswerPairSuccess(iq, creds_);
  if (!answer.ok()) {
    log_->warn("pairing rejected: {}", answer.status().message());
    Send(PairErrorReply(iq, answer.status()));
    close_after_write_ = CloseInfo{CloseCause::kPairingRejected, 401,
                                   absl::StrCat("pairing rejected: ", answer.status().message())};
    if (!writing_) StartWriter();
    return;
  }
  paired_ = true;
  creds_ = answer->creds;
  Send(answer->reply);
  log_->info("paired as device {} of {} ({})", creds_.device,
             MaskPhone(std::to_string(creds_.phone)), answer->device.platform);
  if (observer_) observer_->OnPaired(answer->device, creds_);
  // The server answers with stream error 515; the owner then logs in.
  login_deadline_.expires_after(ToChrono(options_.connect_timeout));
  login_deadline_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec)
      self->Finish({CloseCause::kRestartRequired, 515, "paired; no restart from the server"});
  });
}

// Inbound stanzas are acknowledged without being decrypted: an <ack> of the stanza's class,
// which is what a connection-only client owes the server. Its attributes are whatsmeow's
// (receipt.go sendAck): class and id, `to` the stanza's `from`, `participant` and
// `recipient` copied when present, `type` except for messages.
void Connection::Impl::OnStanza(const Node& node) {
  const std::string* id = node.Attr("id");
  const std::string* from = node.Attr("from");
  // An encrypted message the session decrypts and stores first: it sends the receipt itself.
  const bool taken = node.tag == "message" && id && from && node.Child("enc") && observer_ &&
                     observer_->OnEncryptedMessage(node);
  if (id && from && !taken) {
    Node::Attrs attrs = {{"id", *id}, {"to", *from}, {"class", node.tag}};
    if (const std::string* p = node.Attr("participant")) attrs.emplace_back("participant", *p);
    if (const std::string* r = node.Attr("recipient")) attrs.emplace_back("recipient", *r);
    if (node.tag != "message") {
      if (const std::string* t = node.Attr("type")) attrs.emplace_back("type", *t);
    }
    Send(MakeNode("ack", std::move(attrs)));
  }
  if (node.tag != "call" && node.tag != "status" && IsOwnPhone(node)) {
    absl::Time at = absl::Now();
    int64_t t = 0;
    if (const std::string* ts = node.Attr("t");
        ts && absl::SimpleAtoi(*ts, &t) && t > 0 && absl::FromUnixSeconds(t) < at) {
      at = absl::FromUnixSeconds(t);
    }
    if (observer_) observer_->OnPhoneSeen(at);
  }
  if (observer_ &&
      (node.tag == "receipt" || (node.tag == "notification" && node.AttrOr("type") == "devices"))) {
    observer_->OnMessageStanza(node);
  }
  if (node.tag == "notification" && node.AttrOr("type") == "link_code_companion_reg") {
    OnPrimaryHello(node);
  } else if (const Node* count = node.Child("count");
             count && node.tag == "notification" && node.AttrOr("type") == "encrypt" &&
             (node.AttrOr("from") == kServerJid || node.AttrOr("from") == kServerJid.substr(1))) {
    // The server is running out of this device's one-time pre-keys (docs/wa-protocol.md §11).
    const int64_t n = CodeOf(*count, "value");
    stats.prekey_count = n;
    if (observer_) observer_->OnPreKeyCount(n);
  } else if (node.tag == "notification" && node.AttrOr("type") == "encrypt" &&
             node.Child("identity")) {
    const std::string who = node.AttrOr("from");
    const std::string user = who.substr(0, who.find_first_of(":@"));
    if (observer_ && !user.empty()) observer_->OnIdentityChanged(user);
  } else if (node.tag == "message") {
    const absl::Time now = absl::Now();
    ++stats.inbound_messages;
    stats.last_inbound_unix_ms = absl::ToUnixMillis(now);
    if (observer_) observer_->OnInboundMessage(now);
  }
}

// Did the account's primary phone send this? Its sender (`participant` in groups, else
// `from`) is our number or our LID at device 0 ("N@s.whatsapp.net", "N:0@…", "N.0:0@…").
bool Connection::Impl::IsOwnPhone(const Node& node) const {
  const std::string* sender = node.Attr("participant");
  if (!sender) sender = node.Attr("from");
  if (!sender || !creds_.paired()) return false;
  std::string_view jid = *sender;
  const size_t at = jid.find('@');
  if (at == std::string_view::npos) return false;
  std::string_view user = jid.substr(0, at);
  const std::string_view server = jid.substr(at + 1);
  if (const size_t colon = user.find(':'); colon != std::string_view::npos) {
    if (user.substr(colon + 1) != "0") return false;
    user = user.substr(0, colon);
  }
  if (const size_t dot = user.find('.'); dot != std::string_view::npos) {
    user = user.substr(0, dot);  // an agent part
  }
  if (server == "s.whatsapp.net") return user == std::to_string(creds_.phone);
  if (server == "lid" && !creds_.lid.empty()) {
    std::string_view lid = creds_.lid;
    return user == lid.substr(0, lid.find_first_of(":@"));
  }
  return false;
}

Node Connection::Impl::Presence(const char* type) const {
  Node::Attrs attrs = {{"type", type}};
  if (!creds_.push_name.empty()) attrs.emplace_back("name", creds_.push_name);
  return MakeNode("presence", std::move(attrs));
}

// What the session sends about the stanzas it took (OnEncryptedMessage): their receipts and acks.
// (Here rather than in connection.cc, which GCC 12 fails to compile once it grows.)
void Connection::Send(Node node) {
  boost::asio::post(impl_->Executor(),
                    [impl = impl_, node = std::move(node)] { impl->SendIfLoggedIn(node); });
}

void Connection::Impl::SendIfLoggedIn(const Node& node) {
  if (logged_in_ && !finished_ && !closing_) Send(node);
}

}  // namespace wasentinel::wa
