// Session leases across replicas (README "Architecture" › "More than one replica"): a
// session's socket is held only under its lease (store.h Lease). The keeper takes a lease
// before a call acts on a session (HoldLease), renews every held lease every lease_ttl / 3,
// cuts the sockets of leases lost, and claims the sessions of replicas that died or left
// (their share spread over the living replicas).
//
// Threads: HoldLease and ClaimOrphans on the calling (gRPC or start-up) thread, serialized so
// that two calls never race for tokens; the keeper's own thread (Start) renews and claims.
// Neither runs on the connection thread: what changes the state machine goes through OnIo.
// Clock: renewals are timed on the steady clock (std::chrono::steady_clock).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "state_machine.h"
#include "store.h"

namespace wasentinel::session {

class LeaseKeeper {
 public:
  /// Not owned: store, options (replica_id, lease_ttl).
  LeaseKeeper(SessionStore& store, const ManagerOptions& options,
              std::shared_ptr<StateMachine> sessions);
  ~LeaseKeeper();

  /// The gRPC address ("host:port") other replicas forward calls for this one's sessions to;
  /// set before Start.
  void set_advertise_address(std::string address) { advertise_address_ = std::move(address); }
  /// This replica as the replica set records it.
  ReplicaInfo Me() const { return {options_.replica_id, advertise_address_}; }

  /// Makes sure this replica holds the lease of `rec`, taking it when no other replica holds a
  /// live one. HeldElsewhere(owner) when one does; UNAVAILABLE while it changes hands or the
  /// database is down.
  absl::Status HoldLease(const SessionRecord& rec);
  /// Claims sessions that want a socket and have no live lease: this replica's share of all
  /// wanted sessions, and at least its part of the orphans; they connect with `reason`.
  void ClaimOrphans(v1::StateReason reason);

  /// Starts the keeper thread: renew, then claim orphans, every lease_ttl / 3 or when nudged.
  void Start();
  /// Wakes the keeper to claim orphans now (another replica gave its leases up).
  void Nudge();
  /// Stops claiming (shutdown), then stops the keeper thread. Idempotent.
  void Stop();

 private:
  void Loop();
  // Renews every lease held; cuts the sockets of those lost. False when the database could
  // not be reached (and past 0.8 × ttl without a renewal, every socket is closed).
  bool Renew();

  SessionStore& store_;
  const ManagerOptions& options_;
  std::shared_ptr<StateMachine> sessions_;
  std::string advertise_address_;
  // Lease acquisitions (HoldLease, ClaimOrphans) one at a time.
  absl::Mutex lease_mu_;
  bool stopping_claims_ ABSL_GUARDED_BY(lease_mu_) = false;
  // The keeper thread's wake-ups.
  absl::Mutex keeper_mu_;
  bool keeper_stop_ ABSL_GUARDED_BY(keeper_mu_) = false;
  bool keeper_nudged_ ABSL_GUARDED_BY(keeper_mu_) = false;
  std::chrono::steady_clock::time_point last_renewed_ = std::chrono::steady_clock::now();
  std::thread thread_;
};

}  // namespace wasentinel::session
