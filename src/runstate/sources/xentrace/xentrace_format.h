/*
 * xentrace record layout constants shared by the C readers (sources/xentrace/_walk.c
 * and analysis/_xenalyze.c).  Upstream names and values: xen/include/public/trace.h;
 * see docs of the format in sources/xentrace/constants.py.
 */
#ifndef RUNSTATE_XENTRACE_FORMAT_H
#define RUNSTATE_XENTRACE_FORMAT_H

/* TRC_TRACE_CPU_CHANGE with N = 2 extra words and no TSC: every window starts with it */
#define CPU_CHANGE_HEADER 0x2001f003u
#define EVENT_MASK 0x0fffffffu
/* TRC_SCHED_RUNSTATE_CHANGE carries old/new states in bits 4-11 of its id */
#define RUNSTATE_MASK 0x0ffff00fu
#define RUNSTATE_CHANGE 0x00021001u
#define CONTINUE_RUNNING 0x00021002u
#define LOST_RECORDS 0x0001f001u
#define WRAP_BUFFER 0x0001f002u
/* sanity limits for a window header */
#define MAX_PCPUS 4096
#define MAX_WINDOW (1LL << 30)

#endif
