#include "tls_socket.h"

#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <csignal>
#include <mutex>

namespace wasentinel::wa {

namespace asio = boost::asio;
using boost::system::error_code;

TlsSocket::TlsSocket(const executor_type& executor, asio::ssl::context& ctx)
    : tcp_(executor), ssl_(SSL_new(ctx.native_handle())) {
  static std::once_flag sigpipe_ignored;
  std::call_once(sigpipe_ignored, [] { ::signal(SIGPIPE, SIG_IGN); });
  if (!ssl_) {
    throw boost::system::system_error(
        error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category()));
  }
  SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                               SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_options(ssl_.get(), SSL_OP_NO_RENEGOTIATION);
}

TlsSocket::Step TlsSocket::Classify(int ret) {
  if (ret > 0) return {static_cast<std::size_t>(ret), Want::kNothing, {}};
  const int saved_errno = errno;
  switch (SSL_get_error(ssl_.get(), ret)) {
    case SSL_ERROR_WANT_READ:
      return {0, Want::kRead, {}};
    case SSL_ERROR_WANT_WRITE:
      return {0, Want::kWrite, {}};
    case SSL_ERROR_ZERO_RETURN:
      return {0, Want::kNothing, asio::error::eof};
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        // A socket error, or (errno 0) the peer closed TCP without close_notify.
        if (saved_errno != 0)
          return {0, Want::kNothing, error_code(saved_errno, asio::error::get_system_category())};
        return {0, Want::kNothing, asio::ssl::error::stream_truncated};
      }
      break;
    default:
      break;
  }
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) {
    // A result this stream does not use (WANT_X509_LOOKUP, WANT_ASYNC, …) with nothing queued.
    return {0, Want::kNothing, asio::ssl::error::unspecified_system_error};
  }
  if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    return {0, Want::kNothing, asio::ssl::error::stream_truncated};
  }
  return {0, Want::kNothing, error_code(static_cast<int>(e), asio::error::get_ssl_category())};
}

asio::awaitable<void> TlsSocket::Handshake(const std::string& host) {
  auto& socket = tcp_.socket();
  socket.native_non_blocking(true);
  SSL* ssl = ssl_.get();
  auto fail = [] {
    throw boost::system::system_error(
        error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category()));
  };
  if (SSL_set_fd(ssl, socket.native_handle()) != 1) fail();
  attached_ = true;
  error_code not_ip;
  asio::ip::make_address(host, not_ip);
  if (not_ip) {
    // RFC 6066 §3: SNI carries host names only.
    if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1 || SSL_set1_host(ssl, host.c_str()) != 1) {
      fail();
    }
  } else if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) != 1) {
    fail();
  }
  for (;;) {
    ERR_clear_error();
    const Step step = Classify(SSL_connect(ssl));
    if (step.error) throw boost::system::system_error(step.error);
    if (step.want == Want::kNothing) co_return;
    co_await socket.async_wait(
        step.want == Want::kRead ? asio::socket_base::wait_read : asio::socket_base::wait_write,
        asio::use_awaitable);
  }
}

void TlsSocket::NotifyClose() noexcept {
  if (!attached_ || !tcp_.socket().is_open() || !SSL_is_init_finished(ssl_.get())) return;
  ERR_clear_error();
  SSL_shutdown(ssl_.get());  // one try: close_notify goes out if the socket takes it now
  ERR_clear_error();
}

void teardown(boost::beast::role_type role, TlsSocket& socket, error_code& ec) {
  socket.NotifyClose();
  boost::beast::websocket::teardown(role, socket.next_layer().socket(), ec);
}

}  // namespace wasentinel::wa
