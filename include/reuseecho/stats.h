/* reuseecho statistics: the one list of counters.
 * Shared by the server, the ctl client and the tests. Every per-worker counter, the
 * sum, the JSON keys and the Prometheus series are generated from RE_STATS_COUNTERS.
 */
#ifndef REUSEECHO_INCLUDE_REUSEECHO_STATS_H
#define REUSEECHO_INCLUDE_REUSEECHO_STATS_H

#include <stdint.h>

/* X(field, kind, metric, labels, help)
 *   field   struct member and JSON key
 *   kind    counter (monotonic), gauge, or counter_ms (a monotonic count of
 *           milliseconds: JSON and tables show it as is, Prometheus in seconds)
 *   metric  Prometheus name without the "reuseecho_" prefix
 *   labels  extra Prometheus labels (besides worker=) or ""
 *   help    one-line description (# HELP, once per metric name)
 */
#define RE_STATS_COUNTERS(X) \
	X(accepted, counter, "connections_accepted_total", "", "Connections accepted") \
	X(closed_eof, counter, "connections_closed_total", "reason=\"eof\"", "Connections closed, by reason") \
	X(closed_error, counter, "connections_closed_total", "reason=\"error\"", "Connections closed, by reason") \
	X(closed_idle, counter, "connections_closed_total", "reason=\"idle\"", "Connections closed, by reason") \
	X(closed_limit, counter, "connections_closed_total", "reason=\"limit\"", "Connections closed, by reason") \
	X(closed_drain, counter, "connections_closed_total", "reason=\"drain\"", "Connections closed, by reason") \
	X(closed_impair, counter, "connections_closed_total", "reason=\"impairment\"", "Connections closed, by reason") \
	X(reset_idle, counter, "connections_reset_total", "reason=\"idle\"", "Closes that reset the connection (RST), by reason; each is also in connections_closed_total") \
	X(reset_drain, counter, "connections_reset_total", "reason=\"drain\"", "Closes that reset the connection (RST), by reason; each is also in connections_closed_total") \
	X(reset_limit, counter, "connections_reset_total", "reason=\"limit\"", "Closes that reset the connection (RST), by reason; each is also in connections_closed_total") \
	X(reset_error, counter, "connections_reset_total", "reason=\"error\"", "Closes that reset the connection (RST), by reason; each is also in connections_closed_total") \
	X(reset_impair, counter, "connections_reset_total", "reason=\"impairment\"", "Closes that reset the connection (RST), by reason; each is also in connections_closed_total") \
	X(impaired_conns, counter, "impaired_connections_total", "", "Connections the impairments applied to (chosen at accept by share)") \
	X(impaired_delayed_bytes, counter, "impaired_delayed_bytes_total", "", "Echoed bytes held back by delay or jitter before they were sent") \
	X(active, gauge, "connections_active", "", "Connections open now") \
	X(bytes_received, counter, "bytes_received_total", "", "Bytes received from clients") \
	X(bytes_sent, counter, "bytes_sent_total", "", "Bytes echoed back to clients") \
	X(recv_calls, counter, "recv_calls_total", "", "recv(2) calls on client sockets") \
	X(send_calls, counter, "send_calls_total", "", "send(2) calls on client sockets") \
	X(send_eagain, counter, "send_eagain_total", "", "Sends that found the socket buffer full") \
	X(backpressure_pauses, counter, "backpressure_pauses_total", "", "Times reading stopped because unsent output reached --conn-buffer") \
	X(budget_pauses, counter, "budget_pauses_total", "", "Times reading stopped because --max-buffered had no room for more unsent output") \
	X(buffer_bytes, gauge, "buffer_bytes", "", "Bytes of connection buffers allocated or reserved, counted against --max-buffered") \
	X(ready_requeues, counter, "ready_requeues_total", "", "Connections put back on the ready list after using their per-wakeup budget") \
	X(epoll_waits, counter, "epoll_waits_total", "", "epoll_wait(2) calls") \
	X(events, counter, "events_total", "", "epoll events handled") \
	X(accept_errors_fd, counter, "accept_errors_total", "class=\"emfile\"", "accept4(2) failures, by errno class") \
	X(accept_errors_other, counter, "accept_errors_total", "class=\"other\"", "accept4(2) failures, by errno class") \
	X(udp_datagrams_received, counter, "udp_datagrams_received_total", "", "UDP datagrams received (--udp)") \
	X(udp_datagrams_sent, counter, "udp_datagrams_sent_total", "", "UDP datagrams echoed back") \
	X(udp_bytes_received, counter, "udp_bytes_received_total", "", "UDP payload bytes received") \
	X(udp_bytes_sent, counter, "udp_bytes_sent_total", "", "UDP payload bytes echoed back") \
	X(udp_dropped_truncated, counter, "udp_dropped_total", "reason=\"truncated\"", "UDP datagrams received and not echoed, by reason") \
	X(udp_dropped_queue_full, counter, "udp_dropped_total", "reason=\"queue_full\"", "UDP datagrams received and not echoed, by reason") \
	X(udp_dropped_send_error, counter, "udp_dropped_total", "reason=\"send_error\"", "UDP datagrams received and not echoed, by reason") \
	X(udp_dropped_loop_guard, counter, "udp_dropped_total", "reason=\"loop_guard\"", "UDP datagrams received and not echoed, by reason") \
	X(udp_dropped_not_unicast, counter, "udp_dropped_total", "reason=\"not_unicast\"", "UDP datagrams received and not echoed, by reason") \
	X(udp_dropped_rate_limit, counter, "udp_dropped_total", "reason=\"rate_limit\"", "UDP datagrams received and not echoed, by reason") \
	X(udp_gro_datagrams, counter, "udp_gro_datagrams_total", "", "UDP datagrams received coalesced in UDP_GRO bundles (several in one receive)") \
	X(udp_kernel_drops, counter, "udp_receive_queue_drops_total", "", "UDP datagrams the kernel dropped because a worker's socket receive buffer was full") \
	X(udp_recv_calls, counter, "udp_recv_calls_total", "", "recvmmsg(2) calls on UDP sockets") \
	X(udp_send_calls, counter, "udp_send_calls_total", "", "sendmmsg(2) calls on UDP sockets") \
	X(stall_steer_episodes, counter, "stall_steer_episodes_total", "", "Times new connections were steered around the worker because its event loop stalled (--stall-steer)") \
	X(stall_steered, gauge, "stall_steered", "", "1 while new connections are steered around the worker's stalled event loop (process: workers steered around now)") \
	X(stall_steered_ms, counter_ms, "stall_steered_seconds_total", "", "Time new connections were steered around the worker's stalled event loop") \
	X(incoming_cpu_sampled, counter, "incoming_cpu_sampled_total", "", "Accepted connections whose SO_INCOMING_CPU was sampled (locality)") \
	X(incoming_cpu_local, counter, "incoming_cpu_local_total", "", "Sampled connections whose packets were processed on the worker's own CPU")

/* Plain values: a snapshot, a sum, or the retired total. */
struct re_stats_counters {
#define RE_STATS_FIELD(field, kind, metric, labels, help) uint64_t field;
	RE_STATS_COUNTERS(RE_STATS_FIELD)
#undef RE_STATS_FIELD
};

#endif
