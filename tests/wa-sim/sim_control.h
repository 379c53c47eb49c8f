// A blocking client of wa-sim's control API (HTTP/JSON on loopback), for tests and benchmarks.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace wasentinel::sim {

class SimControl {
 public:
  explicit SimControl(uint16_t port, std::string host = "127.0.0.1")
      : host_(std::move(host)), port_(port) {}

  /// Sends `method target` with an optional JSON body; answers the JSON reply, or the error
  /// (UNAVAILABLE for transport failures, FAILED_PRECONDITION with the body for non-2xx).
  absl::StatusOr<nlohmann::json> Call(boost::beast::http::verb method, const std::string& target,
                                      const nlohmann::json& body = nullptr) {
    namespace beast = boost::beast;
    namespace http = beast::http;
    try {
      boost::asio::io_context io;
      boost::asio::ip::tcp::resolver resolver(io);
      beast::tcp_stream stream(io);
      stream.expires_after(std::chrono::seconds(10));
      stream.connect(resolver.resolve(host_, std::to_string(port_)));
      http::request<http::string_body> req{method, target, 11};
      req.set(http::field::host, host_);
      if (!body.is_null()) {
        req.set(http::field::content_type, "application/json");
        req.body() = body.dump();
      }
      req.prepare_payload();
      http::write(stream, req);
      beast::flat_buffer buffer;
      http::response<http::string_body> res;
      http::read(stream, buffer, res);
      beast::error_code ec;
      stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
      auto json = nlohmann::json::parse(res.body(), nullptr, false);
      if (res.result_int() >= 300) {
        return absl::FailedPreconditionError(
            absl::StrCat("wa-sim ", target, " answered ", res.result_int(), ": ", res.body()));
      }
      return json;
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("wa-sim control: ", e.what()));
    }
  }

  absl::StatusOr<nlohmann::json> Post(const std::string& target,
                                      const nlohmann::json& body = nlohmann::json::object()) {
    return Call(boost::beast::http::verb::post, target, body);
  }
  absl::StatusOr<nlohmann::json> Get(const std::string& target) {
    return Call(boost::beast::http::verb::get, target);
  }

 private:
  std::string host_;
  uint16_t port_;
};

}  // namespace wasentinel::sim
