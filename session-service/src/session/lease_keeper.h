// Session leases across replicas (README "Architecture" › "More than one replica"): a
// session's socket is held only under its lease (store.h Lease). Every lease names this
// replica's current holder (store.h StartHolder: one `lease_holders` row per incarnation), and
// renewing that one row every lease_ttl / 3 keeps them all, whatever their number. The keeper
// takes a lease before a call acts on a session (HoldLease), renews the holder, cuts the
// sockets of leases lost, and claims the sessions of replicas that died or left (their share
// spread over the living replicas). When its holder expired and was deleted (the database was
// out of reach too long), every lease is lost: it starts a new holder, a new epoch, and claims
// sessions again like any other replica.
//
// Expand step (store.h, README "Deployment", the Migrations bullet): while replicas of the
// previous version run beside this one (a rolling update), each renewal also keeps every
// lease's own expiry and this replica's `session_replicas` heartbeat up to date for them, in
// the same round trip; the keeper logs when that starts and ends. The contract release
// removes it.
//
// Threads: HoldLease and ClaimOrphans on the calling (gRPC or start-up) thread, serialized so
// that two calls never race for tokens; the keeper's own thread (Start) renews and claims.
// Neither runs on the connection thread: what changes the state machine goes through OnIo.
// The holder id is written by StartHolder (start-up) and by the keeper thread (a new epoch),
// and read by every thread that takes leases.
// Clock: renewals are timed on the steady clock (std::chrono::steady_clock).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

  /// Joins the replica set: starts this incarnation's lease holder (store.h StartHolder), which
  /// every lease taken from now on names. Call once, before taking leases and before Start.
  absl::Status StartHolder();
  /// The current holder id; UNAVAILABLE before StartHolder, or while a new epoch could not be
  /// started yet after the last one expired.
  absl::StatusOr<int64_t> Holder() const;

  /// Makes sure this replica holds the lease of `rec`, taking it when no other replica holds a
  /// live one. When it takes the lease, `rec` is read again under it (a write made before, by
  /// the previous holder, may have landed after `rec` was read) and adopted as read.
  /// HeldElsewhere(owner) when another replica holds it; NOT_FOUND when the session was deleted
  /// meanwhile; UNAVAILABLE while it changes hands or the database is down.
  absl::Status HoldLease(SessionRecord& rec);
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
  // Renews the holder; cuts the sockets of leases lost. False when the database could not be
  // reached (and past 0.8 × ttl without a renewal, every socket is closed).
  bool Renew();
  // The holder's lease count or token sum differs from what the state machine holds: compares
  // the tokens one by one, cuts the sessions whose lease is gone and gives up leases stored
  // under the holder that the state machine does not hold.
  void Reconcile(int64_t holder);
  // The holder was deleted: every lease is lost (sockets cut at once); starts a new holder.
  // True when it started.
  bool NewEpoch();
  // Wakes the keeper to learn that holder `gone` was deleted and start a new one; true once a
  // new holder is in place (false after 3 s, or when stopping). Called under lease_mu_, which
  // the keeper's renewal does not take.
  bool AwaitNewHolder(int64_t gone);

  SessionStore& store_;
  const ManagerOptions& options_;
  std::shared_ptr<StateMachine> sessions_;
  std::string advertise_address_;
  // This incarnation's `lease_holders` row; 0 while there is none.
  std::atomic<int64_t> holder_ = 0;
  // Expand step: whether the last renewal found a replica of the previous version alive
  // (store.h HolderState); logged when it changes. Keeper thread only.
  bool previous_version_alive_ = false;
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
