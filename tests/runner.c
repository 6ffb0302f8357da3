/* SPDX-License-Identifier: MIT */
/* runner.c - run a libcheck suite and turn the result into an exit status. */
#include "autoconfig.h"

#include <stdlib.h>

#include "runner.h"

int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
