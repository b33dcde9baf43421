/*
 * fuzz_json.c -- the JSON documents the relay reads: ClientInfo (from the
 * handshake box, so from any client), the -c key file and the -rate-config
 * file (from disk).  derp.c's parsers, on the input as it is.
 *
 * Checks: a parsed ClientInfo's AppName is NUL-terminated with no control
 * bytes; a key file that parses formats (keyfile_format) to derper's bytes,
 * which parse back to the same key; the parsers never read past the input
 * (the input is an exactly sized buffer under ASan).
 */
#define main derp_main
#include "../../derp.c"
#undef main
#include "fuzz.h"

static void
fuzz_init(void)
{
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *json = (const char *)data, *why = NULL;
	struct clientinfo ci;
	struct ratecfg rc;
	uint8_t key[32], key2[32];
	char text[256];
	size_t i, n;

	if (clientinfo_parse(json, size, &ci) == 0) {
		n = strlen(ci.app_name);
		FUZZ_CHECK(n < sizeof ci.app_name, "AppName not terminated");
		for (i = 0; i < n; i++)
			FUZZ_CHECK((unsigned char)ci.app_name[i] >= 0x20 &&
			    ci.app_name[i] != 0x7F, "control byte in AppName");
		FUZZ_CHECK(ci.can_ack_pings <= 1 && ci.is_prober <= 1,
		    "bool fields");
	}
	if (keyfile_parse(json, size, key, &why) == 0) {
		n = keyfile_format(text, sizeof text, key);
		FUZZ_CHECK(n > 0 && keyfile_parse(text, n, key2, &why) == 0 &&
		    memcmp(key, key2, 32) == 0, "key file does not round-trip");
	} else {
		FUZZ_CHECK(why != NULL && why[0] != '\0', "key file error "
		    "without a reason");
	}
	(void)ratecfg_parse(json, size, &rc);
	return 0;
}

/* Each JSON row of client_info_json.tsv, the key file of keys_and_config.txt
 * and a few hand-made documents. */
static void
fuzz_seeds(const char *datadir)
{
	static const char *const docs[] = {
		"{\"PrivateKey\": \"privkey:0002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f60\"}",
		"{\"PrivateKey\": \"privkey:00\"}",
		"{\"PerClientRateLimitBytesPerSec\": 1000000, \"PerClientRateBurstBytes\": 2000000}",
		"{\"version\":2,\"CanAckPings\":true,\"IsProber\":false,\"AppName\":\"caf\\u00e9\\ud83d\\ude00\\n\",\"x\":[1,-2.5e+3,{\"y\":null}]}",
		"{\"mesh\\u212aey\":\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"}",
		"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
		" null ",
	};
	char name[64], *text, *line, *next, *json, *end, *b, *e;
	size_t i, len;
	int k = 0;

	for (i = 0; i < sizeof docs / sizeof docs[0]; i++) {
		snprintf(name, sizeof name, "doc-%02zu", i);
		seed_emit(name, docs[i], strlen(docs[i]));
	}
	text = fuzz_slurp(datadir, "derp/client_info_json.tsv", &len);
	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] == '#' || strncmp(line, "verdict\t", 8) == 0)
			continue;
		json = strchr(line, '\t');
		json = json != NULL ? strchr(json + 1, '\t') : NULL;
		if (json == NULL)
			continue;
		json++;
		end = strchr(json, '\t');
		if (end != NULL)
			*end = '\0';
		snprintf(name, sizeof name, "clientinfo-%02d", k++);
		seed_emit(name, json, strlen(json));
	}
	free(text);
	text = fuzz_slurp(datadir, "derp/keys_and_config.txt", &len);
	b = text != NULL ? strstr(text, "config_file_text_begin\n") : NULL;
	e = b != NULL ? strstr(b, "\nconfig_file_text_end") : NULL;
	if (e != NULL) {
		b += strlen("config_file_text_begin\n");
		seed_emit("keyfile", b, (size_t)(e - b));
	}
	free(text);
}
