// The start-up restore's pace: sessions connected one after another at `per_second` (each gap
// jittered ±50 %, so replicas restarted together do not connect in lockstep) with at most
// `max_in_flight` of its connection attempts under way at once, so that a restart does not open
// thousands of TLS handshakes at once (README "Architecture" › "Session states": the start-up
// restore with stagger). The bound holds even with the rate lifted: the handshakes' transient
// buffers then come and go in a small working set instead of all at once, which keeps the
// restore's peak memory, and the heap it leaves fragmented, small.
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

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "wasentinel/session/v1/session.pb.h"

namespace wasentinel::session {

class RestorePacer {
 public:
  /// `connect(id, reason)` connects one session and answers whether it did (false: it no longer
  /// wants a socket by its turn, and the next follows without a gap). `per_second` 0: no limit.
  /// `connecting(id)`: is the connection attempt the pacer started for `id` still under way
  /// (not logged in, not ended)? `max_in_flight` 0: no bound.
  RestorePacer(boost::asio::io_context& io, double per_second, size_t max_in_flight,
               std::function<bool(const std::string&, v1::StateReason)> connect,
               std::function<bool(const std::string&)> connecting);

  /// Queues `ids` to connect with `reason`, behind those already queued. `owner`: what owns
  /// this pacer (the state machine); the pace timer's handler holds it while it runs, so the
  /// pacer is never destroyed under it, and does nothing once it is gone.
  void Queue(const std::vector<std::string>& ids, v1::StateReason reason,
             std::weak_ptr<void> owner);
  /// Drops the queue (shutdown).
  void Stop();
  /// A connection attempt ended (logged in or closed): the next queued session goes when the
  /// pacer was waiting for room. Cheap when it was not.
  void Wake();

 private:
  void Next();
  // Starts `timer_` to call Next after `delay`, as long as the owner lives.
  void NextAfter(absl::Duration delay);

  boost::asio::io_context& io_;
  const double per_second_;
  const size_t max_in_flight_;
  std::function<bool(const std::string&, v1::StateReason)> connect_;
  std::function<bool(const std::string&)> connecting_;
  absl::flat_hash_set<std::string> in_flight_;  // started by the pacer, maybe under way
  bool waiting_for_room_ = false;
  std::deque<std::pair<std::string, v1::StateReason>> queue_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  std::mt19937_64 rng_{std::random_device{}()};
  bool stopped_ = false;
  std::weak_ptr<void> owner_;
};

}  // namespace wasentinel::session
