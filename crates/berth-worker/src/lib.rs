//! Python worker processes: the framed protocol, the client and the supervisor.
