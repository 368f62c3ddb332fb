// TCPWatch's one C need: PERF_EVENT_IOC_SET_FILTER is an _IOW() function-like macro and
// ioctl() is variadic, so Swift can call neither.
#ifndef CSOCKETKIT_WATCH_H
#define CSOCKETKIT_WATCH_H

// Installs an ftrace filter expression (e.g. "sport == 7007 || dport == 7007") on a tracepoint
// perf event, evaluated in the kernel before a record is written; -1 with errno on failure.
int CSocketKit_perf_set_filter(int fd, const char *filter);

#endif
