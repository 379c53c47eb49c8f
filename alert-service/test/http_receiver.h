// A real HTTP/1.1 receiver on loopback for tests (Boost.Beast): records every request and
// answers each with the status the test scripted (default 200), keeping connections alive.
#pragma once

#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace wasentinel::alert::testing {

class HttpReceiver {
 public:
  struct Request {
    std::string target;
    std::map<std::string, std::string> headers;  ///< names in lower case
    std::string body;
  };
  struct Answer {
    int status = 200;
    std::string retry_after;          ///< a Retry-After header when not empty
    std::function<void()> meanwhile;  ///< runs before the answer is written (the send's duration)
  };

  HttpReceiver() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~HttpReceiver() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    // A thread blocked in accept(2) is woken by shutdown(2), not by close.
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    boost::system::error_code ec;
    acceptor_.close(ec);
    {
      absl::MutexLock lock(&mu_);
      // Kept-alive connections wait in read: end them (the fd, not the asio object, which the
      // serving thread owns).
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : connections_) {
      if (t.joinable()) t.join();
    }
  }

  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  /// The answers of the next requests, in order; then 200.
  void Script(std::vector<Answer> answers) {
    absl::MutexLock lock(&mu_);
    for (auto& a : answers) script_.push_back(std::move(a));
  }
  std::vector<Request> requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  void AcceptLoop() {
    for (;;) {
      boost::asio::ip::tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec) return;
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      fds_.push_back(socket.native_handle());
      connections_.emplace_back([this, s = std::move(socket)]() mutable { Serve(std::move(s)); });
    }
  }

  void Serve(boost::asio::ip::tcp::socket socket) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      boost::system::error_code ec;
      http::read(socket, buffer, req, ec);
      if (ec) return;
      Request r;
      r.target = std::string(req.target());
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = std::string(f.value());
      }
      r.body = req.body();
      Answer answer;
      {
        absl::MutexLock lock(&mu_);
        requests_.push_back(std::move(r));
        if (!script_.empty()) {
          answer = script_.front();
          script_.pop_front();
        }
      }
      if (answer.meanwhile) answer.meanwhile();
      http::response<http::string_body> res{static_cast<http::status>(answer.status), 11};
      if (!answer.retry_after.empty()) res.set(http::field::retry_after, answer.retry_after);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      http::write(socket, res, ec);
      if (ec || !req.keep_alive()) return;
    }
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  int port_ = 0;
  std::thread thread_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Answer> script_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> connections_;
};

}  // namespace wasentinel::alert::testing
