/* SPDX-License-Identifier: MIT */
/* runner.h - the one way the libcheck suites run (tests only). */
#ifndef ATROUSD_RUNNER_H
#define ATROUSD_RUNNER_H

#include <check.h>

/* Run every test of s (CK_VERBOSITY decides the output); frees the suite's
 * runner and returns the process exit status. */
int run_suite(Suite *s);

#endif
