// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * fake_tsm: a TEST-ONLY configfs-tsm provider. It is NOT a TEE and proves nothing.
 *
 * The QEMU tests have no SEV-SNP or TDX hardware, so the kernel's configfs-tsm report
 * interface (drivers/virt/coco/tsm) has no provider and every mkdir fails with ENXIO. This
 * module registers a provider named "fake_sev_guest" so that the whole report ABI
 * (mkdir, inblob, generation, outblob, rmdir) runs in the real, unmodified kernel. Its
 * outblob is laid out like a 1184-byte SEV-SNP attestation report body (SNP ABI spec 56860,
 * Table "ATTESTATION_REPORT"): REPORT_DATA is the inblob, MEASUREMENT and HOST_DATA come
 * from the module parameters, and the SIGNATURE area is left zero. Only the signature is
 * simulated, in user space, by the guest's simulated issuer.
 *
 * Written from include/linux/tsm.h of Linux 6.12. Load with
 *   insmod fake_tsm.ko host_data=<64 hex> measurement=<96 hex>
 * Both parameters are required; malformed or missing values make insmod fail with EINVAL.
 * report_error (writable in sysfs) makes report generation fail with that errno.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/tsm.h>

/* The SEV-SNP attestation report layout (little-endian). */
#define SNP_REPORT_SIZE 0x4a0 /* 1184 */
#define SNP_OFF_VERSION 0x000
#define SNP_OFF_GUEST_SVN 0x004
#define SNP_OFF_POLICY 0x008
#define SNP_OFF_VMPL 0x030
#define SNP_OFF_SIGNATURE_ALGO 0x034
#define SNP_OFF_REPORT_DATA 0x050
#define SNP_OFF_MEASUREMENT 0x090
#define SNP_OFF_HOST_DATA 0x0c0
#define SNP_OFF_REPORT_ID 0x140

#define SNP_REPORT_DATA_LEN 64
#define SNP_MEASUREMENT_LEN 48
#define SNP_HOST_DATA_LEN 32
#define SNP_REPORT_ID_LEN 32

#define FAKE_VERSION 5
#define FAKE_GUEST_SVN 1
#define FAKE_POLICY 0x30000ULL /* SMT allowed, reserved bit 17 set: QEMU's default */
#define FAKE_SIGNATURE_ALGO 1 /* ECDSA P-384 with SHA-384 */
/* In every report, so that nobody can mistake one for real evidence. */
static const char fake_report_id[] = "CONTRAST-FAKE-TSM-NOT-A-TEE";

static char *host_data;
module_param(host_data, charp, 0444);
MODULE_PARM_DESC(host_data, "HOST_DATA of every report: 64 hex characters (32 bytes), required");

static char *measurement;
module_param(measurement, charp, 0444);
MODULE_PARM_DESC(measurement, "MEASUREMENT of every report: 96 hex characters (48 bytes), required");

/*
 * Writable at run time (/sys/module/fake_tsm/parameters/report_error) so that a test can
 * make report generation fail and watch the client's error path; 0 (the default) never fails.
 */
static int report_error;
module_param(report_error, int, 0644);
MODULE_PARM_DESC(report_error, "When 1..4095, every report fails with -report_error (tests error paths); default 0");

static u8 host_data_bytes[SNP_HOST_DATA_LEN];
static u8 measurement_bytes[SNP_MEASUREMENT_LEN];

static int parse_hex_param(const char *name, const char *value, u8 *out, size_t len)
{
	if (!value) {
		pr_err("parameter %s is required (%zu hex characters)\n", name, 2 * len);
		return -EINVAL;
	}
	if (strlen(value) != 2 * len || hex2bin(out, value, len)) {
		pr_err("parameter %s must be exactly %zu hex characters\n", name, 2 * len);
		return -EINVAL;
	}
	return 0;
}

static void put_le32(u8 *body, size_t offset, u32 value)
{
	__le32 le = cpu_to_le32(value);

	memcpy(body + offset, &le, sizeof(le));
}

static void put_le64(u8 *body, size_t offset, u64 value)
{
	__le64 le = cpu_to_le64(value);

	memcpy(body + offset, &le, sizeof(le));
}

static int fake_report_new(struct tsm_report *report, void *data)
{
	struct tsm_desc *desc = &report->desc;
	int fail = READ_ONCE(report_error);
	u8 *body;

	if (fail > 0 && fail < MAX_ERRNO)
		return -fail;

	/* Like the real providers: REPORT_DATA is exactly 64 bytes. */
	if (desc->inblob_len != SNP_REPORT_DATA_LEN)
		return -EINVAL;

	/* The tsm core frees outblob with kvfree(). */
	body = kvzalloc(SNP_REPORT_SIZE, GFP_KERNEL);
	if (!body)
		return -ENOMEM;

	put_le32(body, SNP_OFF_VERSION, FAKE_VERSION);
	put_le32(body, SNP_OFF_GUEST_SVN, FAKE_GUEST_SVN);
	put_le64(body, SNP_OFF_POLICY, FAKE_POLICY);
	put_le32(body, SNP_OFF_VMPL, desc->privlevel);
	put_le32(body, SNP_OFF_SIGNATURE_ALGO, FAKE_SIGNATURE_ALGO);
	memcpy(body + SNP_OFF_REPORT_DATA, desc->inblob, SNP_REPORT_DATA_LEN);
	memcpy(body + SNP_OFF_MEASUREMENT, measurement_bytes, SNP_MEASUREMENT_LEN);
	memcpy(body + SNP_OFF_HOST_DATA, host_data_bytes, SNP_HOST_DATA_LEN);
	BUILD_BUG_ON(sizeof(fake_report_id) > SNP_REPORT_ID_LEN);
	memcpy(body + SNP_OFF_REPORT_ID, fake_report_id, sizeof(fake_report_id) - 1);
	/* The signature (0x2a0..) stays zero: nothing here can sign. */

	report->outblob = body;
	report->outblob_len = SNP_REPORT_SIZE;
	return 0;
}

/* The attributes sev_guest shows without an SVSM: no service_* attributes. */
static bool fake_report_attr_visible(int n)
{
	switch (n) {
	case TSM_REPORT_GENERATION:
	case TSM_REPORT_PROVIDER:
	case TSM_REPORT_PRIVLEVEL:
	case TSM_REPORT_PRIVLEVEL_FLOOR:
		return true;
	}
	return false;
}

/*
 * inblob and outblob only. auxblob is hidden although sev_guest shows it: this provider
 * attaches no certificate table, and a visible but empty auxblob would read as an error.
 */
static bool fake_report_bin_attr_visible(int n)
{
	switch (n) {
	case TSM_REPORT_INBLOB:
	case TSM_REPORT_OUTBLOB:
		return true;
	}
	return false;
}

static const struct tsm_ops fake_tsm_ops = {
	.name = "fake_sev_guest",
	.privlevel_floor = 0,
	.report_new = fake_report_new,
	.report_attr_visible = fake_report_attr_visible,
	.report_bin_attr_visible = fake_report_bin_attr_visible,
};

static int __init fake_tsm_init(void)
{
	int rc;

	rc = parse_hex_param("host_data", host_data, host_data_bytes, SNP_HOST_DATA_LEN);
	if (rc)
		return rc;
	rc = parse_hex_param("measurement", measurement, measurement_bytes,
			     SNP_MEASUREMENT_LEN);
	if (rc)
		return rc;
	rc = tsm_register(&fake_tsm_ops, NULL);
	if (rc) {
		pr_err("tsm_register failed: %d (is another TSM provider loaded?)\n", rc);
		return rc;
	}
	pr_warn("TEST-ONLY fake TSM provider registered: its reports prove nothing\n");
	return 0;
}

static void __exit fake_tsm_exit(void)
{
	tsm_unregister(&fake_tsm_ops);
}

module_init(fake_tsm_init);
module_exit(fake_tsm_exit);

MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("TEST-ONLY fake configfs-tsm provider (fake_sev_guest) for Contrast's QEMU tests; not a TEE, must never ship");
