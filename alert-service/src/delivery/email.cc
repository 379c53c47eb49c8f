#include "email.h"

#include <curl/curl.h>

#include <algorithm>
#include <kainjow/mustache.hpp>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "delivery/curl_headers.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/files.h"
#include "wasentinel/common/proto_time.h"
#include "wasentinel/common/validation.h"

namespace wasentinel::alert {
namespace {

using Data = kainjow::mustache::data;

std::string When(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "";
  return absl::FormatTime("%Y-%m-%d %H:%M UTC", FromProto(t), absl::UTCTimeZone());
}

std::string Short(absl::Duration d) {
  d = absl::Trunc(d, d < absl::Minutes(1) ? absl::Seconds(1) : absl::Minutes(1));
  return absl::FormatDuration(d);
}

// "Name <a@b>" → "a@b"; a bare address stays.
std::string Address(const std::string& mailbox) {
  const auto lt = mailbox.rfind('<');
  const auto gt = mailbox.rfind('>');
  if (lt != std::string::npos && gt != std::string::npos && gt > lt) {
    return mailbox.substr(lt + 1, gt - lt - 1);
  }
  return mailbox;
}

std::string Domain(const std::string& mailbox) {
  const std::string a = Address(mailbox);
  const auto at = a.rfind('@');
  return at == std::string::npos ? "wa-sentinel.invalid" : a.substr(at + 1);
}

bool HasLineBreak(const std::string& s) { return s.find_first_of("\r\n") != std::string::npos; }

// RFC 2047 for a header value that is not plain ASCII.
std::string HeaderText(const std::string& s) {
  for (unsigned char c : s) {
    if (c >= 0x80 || c < 0x20) {
      return absl::StrCat(
          "=?UTF-8?B?",
          Base64Encode(ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size())), "?=");
    }
  }
  return s;
}

}  // namespace

absl::StatusOr<EmailTemplates> EmailTemplates::FromDir(const std::string& dir) {
  auto text = ReadWholeFile(dir + "/alert.txt.mustache");
  auto html = ReadWholeFile(dir + "/alert.html.mustache");
  if (!text.ok() || !html.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "e-mail templates alert.txt.mustache and alert.html.mustache not found in ", dir));
  }
  return EmailTemplates{*std::move(text), *std::move(html)};
}

EmailMessage RenderAlertEmail(const v1::Alert& a, v1::Delivery::Kind kind,
                              const std::string& delivery_id, const std::string& to,
                              const SmtpOptions& smtp, const EmailTemplates& templates,
                              absl::Time now) {
  const auto& s = a.session();
  const bool resolved = kind == v1::Delivery::KIND_RESOLVED;
  const std::string name = s.account_name().empty() ? "A WhatsApp session" : s.account_name();
  const std::string phone = s.phone_number_masked().empty() ? "unknown" : s.phone_number_masked();
  std::string severity = v1::Severity_Name(a.severity());
  if (severity.rfind("SEVERITY_", 0) == 0) severity = severity.substr(9);
  std::string headline;
  if (a.event_type() == "session.logged_out") {
    headline = absl::StrCat(name, " was logged out of WhatsApp");
  } else if (a.event_type() == "session.manual_intervention") {
    headline = absl::StrCat(name, " needs a person to bring it back");
  } else if (a.event_type() == "session_service.unreachable") {
    headline = "session-service does not answer";
  } else {
    headline = absl::StrCat(name, " is offline");
  }
  EmailMessage m;
  m.from = smtp.from;
  m.to = to;
  const bool reminder = kind == v1::Delivery::KIND_REMINDER;
  m.subject = resolved ? absl::StrCat("[WA Sentinel] Resolved: ", name, " (", phone, ")")
                       : absl::StrCat("[WA Sentinel] ", reminder ? "Reminder: " : "", severity,
                                      ": ", headline, " (", phone, ")");
  m.message_id = absl::StrCat("<alert-", a.id(), ".", delivery_id, "@", Domain(smtp.from), ">");
  Data d;
  d.set("resolved", resolved ? Data(Data::type::bool_true) : Data(Data::type::bool_false));
  d.set("subject", m.subject);
  d.set("headline", headline);
  d.set("color", a.severity() == v1::SEVERITY_CRITICAL ? "#cf222e" : "#9a6700");
  d.set("account_name", name);
  d.set("phone", phone);
  d.set("session_id", s.session_id().empty() ? "-" : s.session_id());
  d.set("state", s.state().empty() ? "-"
                                   : absl::StrCat(s.state(), s.reason().empty() ? "" : " (",
                                                  s.reason(), s.reason().empty() ? "" : ")"));
  d.set("severity", severity);
  d.set("summary", a.summary());
  d.set("alert_id", a.id());
  d.set("dedup_key", a.dedup_key());
  d.set("raised_at", When(a.raised_at()));
  d.set("resolved_at", a.has_resolved_at() ? When(a.resolved_at()) : When(ToProto(now)));
  d.set("note", "It is connected again.");
  if (s.has_offline_since()) {
    d.set("offline_for", Short(now - FromProto(s.offline_since())));
    d.set("offline_since", When(s.offline_since()));
  }
  if (s.has_last_connected_at()) d.set("last_connected", When(s.last_connected_at()));
  if (!smtp.reconnect_url.empty() && !s.session_id().empty()) {
    d.set("reconnect_url",
          absl::StrReplaceAll(smtp.reconnect_url, {{"{session_id}", s.session_id()}}));
  }
  kainjow::mustache::mustache text(templates.text);
  kainjow::mustache::mustache html(templates.html);
  // Plain text is not HTML: no escaping there.
  text.set_custom_escape([](const std::string& v) { return v; });
  m.text = text.render(d);
  m.html = html.render(d);
  return m;
}

struct CurlEmailSender::Impl {
  CURL* curl = nullptr;
  SmtpOptions options;
  // After a failed transaction the next one opens a new connection: whatever state the server
  // was left in (a half-sent message, a refused RCPT) never carries over to the next e-mail.
  bool fresh_connection = false;
};

CurlEmailSender::CurlEmailSender(SmtpOptions options)
    : impl_(std::make_unique<Impl>(Impl{curl_easy_init(), std::move(options), false})) {}

CurlEmailSender::~CurlEmailSender() { curl_easy_cleanup(impl_->curl); }

SmtpResult CurlEmailSender::Send(const EmailMessage& msg, absl::Time now) {
  CURL* const curl = impl_->curl;  // reused: curl_easy_reset keeps its connection cache
  const SmtpOptions& options = impl_->options;
  SmtpResult out;
  if (!curl) {
    out.error = "libcurl could not be initialised";
    return out;
  }
  // Only checked mailboxes reach MAIL FROM, RCPT TO and the headers: no CR, LF, '<' or '>'
  // can start a command of its own.
  const std::string from_address = Address(msg.from);
  for (const auto& [what, address] :
       {std::pair<const char*, std::string>{"recipient", msg.to}, {"sender", from_address}}) {
    if (auto st = CheckMailbox(what, address); !st.ok()) {
      out.permanent = true;
      out.error = std::string(st.message());
      return out;
    }
  }
  if (HasLineBreak(msg.from) || HasLineBreak(msg.message_id)) {
    out.permanent = true;
    out.error = "a header holds a line break";
    return out;
  }
  curl_easy_reset(curl);
  CurlHeaders rcpt;
  rcpt.Add(Address(msg.to));
  CurlHeaders headers;
  headers.Add(absl::StrCat(
      "Date: ", absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", now, absl::UTCTimeZone())));
  headers.Add(absl::StrCat("From: ", msg.from));
  headers.Add(absl::StrCat("To: ", msg.to));
  headers.Add(absl::StrCat("Subject: ", HeaderText(msg.subject)));
  headers.Add(absl::StrCat("Message-ID: ", msg.message_id));
  headers.Add("Auto-Submitted: auto-generated");
  std::unique_ptr<curl_mime, void (*)(curl_mime*)> mime(curl_mime_init(curl), curl_mime_free);
  curl_mime* alternative = curl_mime_init(curl);
  curl_mimepart* part = curl_mime_addpart(alternative);
  curl_mime_data(part, msg.text.data(), msg.text.size());
  curl_mime_type(part, "text/plain; charset=utf-8");
  curl_mime_encoder(part, "quoted-printable");
  part = curl_mime_addpart(alternative);
  curl_mime_data(part, msg.html.data(), msg.html.size());
  curl_mime_type(part, "text/html; charset=utf-8");
  curl_mime_encoder(part, "quoted-printable");
  part = curl_mime_addpart(mime.get());
  curl_mime_subparts(part, alternative);  // owned by the top-level mime from here
  curl_mime_type(part, "multipart/alternative");
  curl_slist* inline_header = curl_slist_append(nullptr, "Content-Disposition: inline");
  curl_mime_headers(part, inline_header, /*take_ownership=*/1);

  curl_easy_setopt(curl, CURLOPT_URL, options.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from_address.c_str());
  if (impl_->fresh_connection) curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L);
  curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt.list);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.list);
  curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime.get());
  if (!options.username.empty()) {
    curl_easy_setopt(curl, CURLOPT_USERNAME, options.username.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, options.password.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_USE_SSL, options.require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY);
  if (!options.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options.timeout)));
  curl_easy_setopt(
      curl, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(std::min(options.timeout, absl::Seconds(10)))));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  const CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.code);
  impl_->fresh_connection = rc != CURLE_OK;
  if (rc == CURLE_OK) {
    out.sent = true;
    return out;
  }
  out.error = out.code > 0 ? absl::StrCat("SMTP ", out.code, ": ", curl_easy_strerror(rc))
                           : curl_easy_strerror(rc);
  // 5xx for the recipient or the message (550 mailbox unavailable, 553 bad address, 554
  // rejected) will not change; a refused login (535) may once the operator fixes it.
  out.permanent = out.code >= 500 && out.code < 600 && out.code != 535 && out.code != 530;
  return out;
}

}  // namespace wasentinel::alert
