// The start-up restore's pace: sessions connected one after another at `per_second` (each gap
// jittered ±50 %, so replicas restarted together do not connect in lockstep), so that a
// restart does not open thousands of TLS handshakes at once (README "Architecture" ›
// "Session states": the start-up restore with stagger).
//
// Threads: every method runs on the connection thread (it asserts so); the timer's handler
// runs there too.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "wasentinel/session/v1/session.pb.h"

namespace wasentinel::session {

class RestorePacer {
 public:
  /// `connect(id, reason)` connects one session and answers whether it did (false: it no longer
  /// wants a socket by its turn, and the next follows without a gap). `per_second` 0: no limit.
  RestorePacer(boost::asio::io_context& io, double per_second,
               std::function<bool(const std::string&, v1::StateReason)> connect);

  /// Queues `ids` to connect with `reason`, behind those already queued. `owner`: what owns
  /// this pacer (the state machine); the pace timer's handler holds it while it runs, so the
  /// pacer is never destroyed under it, and does nothing once it is gone.
  void Queue(const std::vector<std::string>& ids, v1::StateReason reason,
             std::weak_ptr<void> owner);
  /// Drops the queue (shutdown).
  void Stop();

 private:
  void Next();

  boost::asio::io_context& io_;
  const double per_second_;
  std::function<bool(const std::string&, v1::StateReason)> connect_;
  std::deque<std::pair<std::string, v1::StateReason>> queue_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  std::mt19937_64 rng_{std::random_device{}()};
  bool stopped_ = false;
  std::weak_ptr<void> owner_;
};

}  // namespace wasentinel::session
