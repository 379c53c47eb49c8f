// TlsSocket: a TLS client stream in which OpenSSL reads and writes the TCP socket's descriptor
// itself, for Boost.Beast's websocket::stream<TlsSocket>.
//
// Why not boost::asio::ssl::stream: every asio ssl::stream keeps two 17 KB staging vectors and
// a BIO pair with two 17 KB rings for its whole life, ~68 KB per connection before OpenSSL's
// own record buffers; WhatsApp connections sit idle for minutes between keepalives, so that is
// most of an idle session's memory (README "Benchmarks" › "Where an idle session's memory
// goes"). Here OpenSSL owns the only buffers and, with SSL_MODE_RELEASE_BUFFERS (set on each
// connection, as are partial writes and no renegotiation), frees them whenever a connection
// has nothing buffered, so an idle TLS connection costs its SSL object and cipher state alone.
//
// How: the socket is non-blocking; an operation calls SSL_read / SSL_write / SSL_connect, and
// when OpenSSL answers WANT_READ or WANT_WRITE it waits for the socket to become readable or
// writable (socket::async_wait) and calls again. One read and one write may be outstanding at
// once (Beast's websocket keeps a read pending while it writes), which OpenSSL allows on one
// thread; a write that must retry repeats the same bytes (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
// lets them live in the operation's own copy). Completions never run inside the initiating
// call: an operation that finishes at once is posted.
//
// Errors: the peer's close_notify reads as asio::error::eof; a TCP close without one as
// asio::ssl::error::stream_truncated; OpenSSL failures as asio's ssl category with OpenSSL's
// code (certificate verification failures included); socket failures as their system error.
//
// Signals: OpenSSL writes with write(2), not send(MSG_NOSIGNAL), so a write to a connection the
// peer reset would raise SIGPIPE; the first TlsSocket sets SIGPIPE to be ignored for the process.
//
// Threads: one strand of execution (session-service's connection thread), like every asio
// object here.
#pragma once

// clang-format off
#include <utility>  // before Boost: 1.74's awaitable.hpp uses std::exchange without it
// clang-format on

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_prefix.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <climits>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace wasentinel::wa {

class TlsSocket {
 public:
  using executor_type = boost::beast::tcp_stream::executor_type;
  using next_layer_type = boost::beast::tcp_stream;

  /// A stream over a new, unconnected TCP stream; `ctx` (one for every connection: its
  /// certificates and verification settings) must outlive it.
  TlsSocket(const executor_type& executor, boost::asio::ssl::context& ctx);
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  executor_type get_executor() noexcept { return tcp_.get_executor(); }
  next_layer_type& next_layer() noexcept { return tcp_; }
  SSL* native_handle() noexcept { return ssl_.get(); }

  /// The client handshake over the connected TCP stream: SNI and certificate host-name
  /// verification for `host` (verification as the context sets it). Throws
  /// boost::system::system_error.
  boost::asio::awaitable<void> Handshake(const std::string& host);

  /// Sends close_notify if it fits in the socket now (never waits; the TCP teardown follows).
  void NotifyClose() noexcept;

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        ReadOp{this, boost::beast::buffers_front(buffers)}, token, tcp_.socket());
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        WriteOp{this, Linear(buffers)}, token, tcp_.socket());
  }

 private:
  enum class Want { kNothing, kRead, kWrite };
  // One OpenSSL call's outcome: bytes (> 0), or what to wait for, or an error.
  struct Step {
    std::size_t bytes = 0;
    Want want = Want::kNothing;
    boost::system::error_code error;
  };
  Step Classify(int ret);
  // What a write sends: the first buffer as is, or (Beast's masked frames come as header +
  // payload) the sequence copied into one record's worth, so a frame is one TLS record.
  struct Bytes {
    boost::asio::const_buffer view;
    std::shared_ptr<std::vector<char>> copy;  // holds `view` when copied
  };
  template <class ConstBuffers>
  static Bytes Linear(const ConstBuffers& buffers) {
    auto first = boost::beast::buffers_front(buffers);
    const std::size_t total = boost::asio::buffer_size(buffers);
    if (first.size() == total) return {first, nullptr};
    auto copy = std::make_shared<std::vector<char>>(std::min<std::size_t>(total, kMaxRecord));
    boost::asio::buffer_copy(boost::asio::buffer(*copy), buffers);
    return {boost::asio::buffer(*copy), copy};
  }
  static constexpr std::size_t kMaxRecord = 16 * 1024;

  // The state both operations share: call OpenSSL, wait as it asks, post an immediate result.
  struct OpBase {
    TlsSocket* s;
    bool waited = false;
    bool posted = false;
    Step result;
    template <class Self, class Call>
    void Drive(Self& self, boost::system::error_code ec, Call call) {
      if (posted) return self.complete(result.error, result.bytes);
      if (ec) return self.complete(ec, 0);
      if (!s->tcp_.socket().is_open()) {
        // Abort() closed the socket after this wait had already completed: OpenSSL still
        // holds the old descriptor number, which may belong to another socket by now.
        result = {0, Want::kNothing, boost::asio::error::operation_aborted};
      } else {
        ERR_clear_error();
        result = s->Classify(call());
      }
      if (result.want != Want::kNothing) {
        waited = true;
        s->tcp_.socket().async_wait(result.want == Want::kRead
                                        ? boost::asio::socket_base::wait_read
                                        : boost::asio::socket_base::wait_write,
                                    std::move(self));
        return;
      }
      if (waited) return self.complete(result.error, result.bytes);
      posted = true;
      boost::asio::post(s->tcp_.get_executor(), std::move(self));
    }
  };
  struct ReadOp : OpBase {
    boost::asio::mutable_buffer buffer;
    ReadOp(TlsSocket* s, boost::asio::mutable_buffer b) : OpBase{s}, buffer(b) {}
    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}) {
      if (buffer.size() == 0 && !posted) {
        posted = true;
        return boost::asio::post(s->tcp_.get_executor(), std::move(self));
      }
      Drive(self, ec, [this] {
        return SSL_read(s->ssl_.get(), buffer.data(),
                        static_cast<int>(std::min<std::size_t>(buffer.size(), INT_MAX)));
      });
    }
  };
  struct WriteOp : OpBase {
    Bytes bytes;
    WriteOp(TlsSocket* s, Bytes b) : OpBase{s}, bytes(std::move(b)) {}
    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}) {
      if (bytes.view.size() == 0 && !posted) {
        posted = true;
        return boost::asio::post(s->tcp_.get_executor(), std::move(self));
      }
      Drive(self, ec, [this] {
        return SSL_write(s->ssl_.get(), bytes.view.data(),
                         static_cast<int>(std::min<std::size_t>(bytes.view.size(), INT_MAX)));
      });
    }
  };

  struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };
  boost::beast::tcp_stream tcp_;
  std::unique_ptr<SSL, SslFree> ssl_;
  bool attached_ = false;  // the descriptor handed to OpenSSL (after the TCP connect)
};

/// Beast's websocket close: close_notify when it fits, then the TCP teardown.
void teardown(boost::beast::role_type role, TlsSocket& socket, boost::system::error_code& ec);

template <class Handler>
void async_teardown(boost::beast::role_type role, TlsSocket& socket, Handler&& handler) {
  socket.NotifyClose();
  boost::beast::websocket::async_teardown(role, socket.next_layer().socket(),
                                          std::forward<Handler>(handler));
}

}  // namespace wasentinel::wa
