/* SPDX-License-Identifier: MIT */
/* fuzz_config.c - libFuzzer target: configuration file text through the
 * option table, then validation. */
#include "autoconfig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	char err[ERR_LEN];
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	config_defaults(&c);
	if (config_load_string(&c, text, err) == 0)
		config_validate(&c, err);
	config_clear(&c);
	free(text);
	return 0;
}
