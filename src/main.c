/* wsbroker — command line: parse options, load the configuration, run. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "server.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG_FILE SYSCONFDIR "/wsbroker/wsbroker.conf"

static void main_usage(FILE *out)
{
    fprintf(out,
            "usage: wsbroker [-c FILE] [-t] [-f] [-v] [-h]\n"
            "  -c FILE  configuration file (default " DEFAULT_CONFIG_FILE ")\n"
            "  -t       test the configuration file and exit\n"
            "  -f       run in the foreground (the only mode; for systemd and nginx habits)\n"
            "  -v       print the version and exit\n"
            "  -h       print this help and exit\n");
}

struct main_options {
    const char *config_file;
    int test_only;
};

/* Returns -1 to go on, or the exit status. */
static int main_parse_options(int argc, char **argv, struct main_options *options)
{
    int option;
    while ((option = getopt(argc, argv, "c:tfvh")) != -1) {
        switch (option) {
        case 'c':
            options->config_file = optarg;
            break;
        case 't':
            options->test_only = 1;
            break;
        case 'f':
            break;
        case 'v':
            printf("wsbroker %s\n", PACKAGE_VERSION);
            return EXIT_SUCCESS;
        case 'h':
            main_usage(stdout);
            return EXIT_SUCCESS;
        default:
            main_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wsbroker: unexpected argument '%s'\n", argv[optind]);
        main_usage(stderr);
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct main_options options = { .config_file = DEFAULT_CONFIG_FILE, .test_only = 0 };
    int status = main_parse_options(argc, argv, &options);
    if (status >= 0)
        return status;

    char error[CONFIG_ERROR_SIZE];
    struct config *config = config_load(options.config_file, error, sizeof(error));
    if (config == NULL) {
        fprintf(stderr, "%s\n", error);
        return EXIT_FAILURE;
    }
    if (options.test_only) {
        fprintf(stderr, "configuration file %s test is successful\n", options.config_file);
        config_release(config);
        return EXIT_SUCCESS;
    }

    struct server server;
    status = server_init(&server, config, options.config_file) == 0 ? server_run(&server)
                                                                    : EXIT_FAILURE;
    config_release(config);
    server_cleanup(&server);
    return status;
}
