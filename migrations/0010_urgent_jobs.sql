ALTER TABLE "jobs" ADD COLUMN "urgent" boolean DEFAULT false NOT NULL;
