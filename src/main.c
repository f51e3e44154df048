/* main: parse the command line, then hand over to the supervisor. The only place
 * that exits. */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "supervisor.h"

int main(int argc, char **argv)
{
	struct re_config cfg;
	char out[8192];
	char err[512];
	int r;

	re_config_defaults(&cfg);
	r = re_config_parse(&cfg, argc, argv, out, sizeof(out), err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "reuseecho: %s\n", err);
		return 2;
	}
	if (r == RE_CONFIG_EXIT_OK) {
		fputs(out, stdout);
		return 0;
	}
	re_log_init();
	re_log_set_level(cfg.log_level);
	return re_supervisor_run(&cfg);
}
