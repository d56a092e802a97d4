CREATE TABLE "apartments" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"site_id" uuid NOT NULL,
	"building_id" uuid NOT NULL,
	"number" varchar(12) NOT NULL,
	"name" text,
	"floor" text,
	"contact_preference" jsonb DEFAULT '{"mode":"group"}'::jsonb NOT NULL,
	"network_group" integer DEFAULT 1 NOT NULL,
	"web_relay_id" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "buildings" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"site_id" uuid NOT NULL,
	"name" text NOT NULL,
	"ground_floor" text,
	"start_floor" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "credentials" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"site_id" uuid NOT NULL,
	"apartment_id" uuid NOT NULL,
	"resident_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"value" text NOT NULL,
	"scope" text NOT NULL,
	"valid_from" timestamp with time zone,
	"valid_until" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "directory_changes" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"site_id" uuid NOT NULL,
	"account_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "directory_renders" (
	"mac" varchar(12) PRIMARY KEY NOT NULL,
	"site_id" uuid NOT NULL,
	"time_zone" text NOT NULL,
	"documents" jsonb NOT NULL,
	"rendered_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "device_placements" (
	"mac" varchar(12) PRIMARY KEY NOT NULL,
	"site_id" uuid NOT NULL,
	"building_id" uuid,
	"apartment_id" uuid
);
--> statement-breakpoint
CREATE TABLE "residents" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"site_id" uuid NOT NULL,
	"apartment_id" uuid NOT NULL,
	"role" text NOT NULL,
	"first_name" text NOT NULL,
	"last_name" text NOT NULL,
	"email" text,
	"mobile" jsonb,
	"landlines" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"remark" text,
	"accessible_floors" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "site_managers" (
	"site_id" uuid NOT NULL,
	"account_id" uuid NOT NULL,
	CONSTRAINT "site_managers_site_id_account_id_pk" PRIMARY KEY("site_id","account_id")
);
--> statement-breakpoint
CREATE TABLE "sites" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"installer_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"name" text NOT NULL,
	"address" text,
	"time_zone" text NOT NULL,
	"contact_display" text DEFAULT 'first-last' NOT NULL,
	"pin_mode" text DEFAULT 'pin' NOT NULL,
	"community_calls" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "write_audit" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"account_id" uuid NOT NULL,
	"installer_id" uuid,
	"site_id" uuid,
	"action" text NOT NULL,
	"subject" text,
	"details" jsonb
);
--> statement-breakpoint
ALTER TABLE "accounts" ADD COLUMN "parent_id" uuid;--> statement-breakpoint
ALTER TABLE "apartments" ADD CONSTRAINT "apartments_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "apartments" ADD CONSTRAINT "apartments_building_id_buildings_id_fk" FOREIGN KEY ("building_id") REFERENCES "public"."buildings"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "buildings" ADD CONSTRAINT "buildings_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credentials" ADD CONSTRAINT "credentials_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credentials" ADD CONSTRAINT "credentials_apartment_id_apartments_id_fk" FOREIGN KEY ("apartment_id") REFERENCES "public"."apartments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credentials" ADD CONSTRAINT "credentials_resident_id_residents_id_fk" FOREIGN KEY ("resident_id") REFERENCES "public"."residents"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_placements" ADD CONSTRAINT "device_placements_mac_devices_mac_fk" FOREIGN KEY ("mac") REFERENCES "public"."devices"("mac") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_placements" ADD CONSTRAINT "device_placements_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_placements" ADD CONSTRAINT "device_placements_building_id_buildings_id_fk" FOREIGN KEY ("building_id") REFERENCES "public"."buildings"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_placements" ADD CONSTRAINT "device_placements_apartment_id_apartments_id_fk" FOREIGN KEY ("apartment_id") REFERENCES "public"."apartments"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "residents" ADD CONSTRAINT "residents_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "residents" ADD CONSTRAINT "residents_apartment_id_apartments_id_fk" FOREIGN KEY ("apartment_id") REFERENCES "public"."apartments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "site_managers" ADD CONSTRAINT "site_managers_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "site_managers" ADD CONSTRAINT "site_managers_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sites" ADD CONSTRAINT "sites_installer_id_accounts_id_fk" FOREIGN KEY ("installer_id") REFERENCES "public"."accounts"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "apartments_building_number_idx" ON "apartments" USING btree ("building_id","number");--> statement-breakpoint
CREATE INDEX "apartments_site_idx" ON "apartments" USING btree ("site_id");--> statement-breakpoint
CREATE UNIQUE INDEX "buildings_site_name_idx" ON "buildings" USING btree ("site_id","name");--> statement-breakpoint
CREATE UNIQUE INDEX "credentials_unique_idx" ON "credentials" USING btree ("site_id","kind","scope","value");--> statement-breakpoint
CREATE INDEX "credentials_resident_idx" ON "credentials" USING btree ("resident_id");--> statement-breakpoint
CREATE INDEX "device_placements_site_idx" ON "device_placements" USING btree ("site_id");--> statement-breakpoint
CREATE INDEX "residents_apartment_idx" ON "residents" USING btree ("apartment_id","created_at");--> statement-breakpoint
CREATE INDEX "residents_site_idx" ON "residents" USING btree ("site_id");--> statement-breakpoint
CREATE UNIQUE INDEX "residents_one_main_idx" ON "residents" USING btree ("apartment_id") WHERE role = 'main';--> statement-breakpoint
CREATE INDEX "site_managers_account_idx" ON "site_managers" USING btree ("account_id");--> statement-breakpoint
CREATE INDEX "sites_installer_idx" ON "sites" USING btree ("installer_id","created_at");--> statement-breakpoint
CREATE INDEX "write_audit_installer_idx" ON "write_audit" USING btree ("installer_id","id");--> statement-breakpoint
CREATE INDEX "write_audit_site_idx" ON "write_audit" USING btree ("site_id","id");--> statement-breakpoint
CREATE INDEX "write_audit_subject_idx" ON "write_audit" USING btree ("subject");--> statement-breakpoint
ALTER TABLE "accounts" ADD CONSTRAINT "accounts_parent_id_accounts_id_fk" FOREIGN KEY ("parent_id") REFERENCES "public"."accounts"("id") ON DELETE restrict ON UPDATE no action;